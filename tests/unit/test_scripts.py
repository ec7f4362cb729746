"""Every remote script template renders with its sample values and is shellcheck clean."""

from __future__ import annotations

import subprocess

import jinja2
import pytest

from jujubackup import scripts
from tests.unit.script_samples import SAMPLES


def _cases() -> list[tuple[str, dict[str, object]]]:
    cases: list[tuple[str, dict[str, object]]] = []
    for name in scripts.template_names():
        sample = SAMPLES.get(name)
        if isinstance(sample, list):
            cases.extend((name, values) for values in sample)
        else:
            cases.append((name, sample if sample is not None else {"__missing__": True}))
    return cases


def test_there_are_templates() -> None:
    assert "detached" in scripts.template_names()


@pytest.mark.parametrize(("name", "values"), _cases())
def test_template_renders_and_passes_shellcheck(name: str, values: dict[str, object]) -> None:
    assert "__missing__" not in values, f"add sample values for {name} to tests/unit/script_samples.py"
    text = scripts.render(name, **values)
    assert text.startswith("#!/bin/bash"), f"{name} must start with #!/bin/bash"
    checked = subprocess.run(
        ["shellcheck", "-s", "bash", "-"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, f"{name}:\n{checked.stdout}{checked.stderr}"


def test_values_are_shell_quoted() -> None:
    text = scripts.render("detached_poll", job_dir="/run/x; rm -rf / #")
    assert "dir='/run/x; rm -rf / #'" in text


def test_missing_value_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        scripts.render("detached_poll")


def test_quote_filter() -> None:
    assert scripts.shell_quote("a b") == "'a b'"
    assert scripts.shell_quote(42) == "42"
    assert scripts.shell_quote("it's") == "'it'\"'\"'s'"
