"""Every remote script template renders with its sample values and is shellcheck clean."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

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
    text = scripts.render("detached_poll", job_dir="/run/x; rm -rf / #", launcher=":", wait_steps=1,
                          poll_step=0.02)
    assert "dir='/run/x; rm -rf / #'" in text


def test_missing_value_is_an_error() -> None:
    with pytest.raises(jinja2.UndefinedError):
        scripts.render("detached_poll")


def test_quote_filter() -> None:
    assert scripts.shell_quote("a b") == "'a b'"
    assert scripts.shell_quote(42) == "42"
    assert scripts.shell_quote("it's") == "'it'\"'\"'s'"


SCRIPT_DIRS = (Path(__file__).resolve().parents[2] / "remote_scripts",
               Path(__file__).resolve().parents[2] / "templates")
FUNCTION_DEF = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\)\s*[{(]", re.M)
LOCAL_NAMES = frozenset({"cleanup"})
"""Function names several scripts may each define for themselves (a script's own EXIT trap)."""


def _template_files() -> list[Path]:
    return sorted(p for d in SCRIPT_DIRS for p in d.rglob("*.j2"))


def test_every_bash_function_has_one_definition() -> None:
    """The one bash library: a helper (json_str, log, a lock, a restart) is defined in one file, the
    library's part or the one script that needs it, never copied (copies drifted: four json_str, two
    of which dropped newlines)."""
    where: dict[str, list[str]] = {}
    for path in _template_files():
        for name in FUNCTION_DEF.findall(path.read_text()):
            where.setdefault(name, []).append(path.name)
    twice = {name: files for name, files in where.items() if len(files) > 1 and name not in LOCAL_NAMES}
    assert not twice, twice


def test_the_library_parts_are_the_files_in_lib() -> None:
    lib = SCRIPT_DIRS[0] / "lib"
    assert {p.name.removesuffix(".bash.j2") for p in lib.glob("*.bash.j2")} == set(scripts.LIB_PARTS)
    for name, needs in scripts.LIB_PARTS.items():
        assert set(needs) <= set(scripts.LIB_PARTS), name
    assert scripts.lib_closure(("manifest",)) == ["json", "hash", "manifest"]


def test_scripts_get_the_library_through_bash_lib_only() -> None:
    """No `{% include %}` of loose helper files: bash_lib resolves what a part needs, each part once.
    And jinja2 is the one templating layer: no @@PLACEHOLDER@@ text a script fills in (bash_json)."""
    for path in _template_files():
        text = path.read_text()
        assert "{% include" not in text, path.name
        assert "@@" not in text, path.name


EXIT_LITERAL = re.compile(r"\b(?:exit|return)\s+([0-9]+)\b")
COMMENT = re.compile(r"(?:^|\s)#(?:\s.*)?$")


def test_exit_codes_come_from_remote_codes() -> None:
    """A script exits with a code the Python side reads only as {{ rc.NAME }} (remote_codes.py): no
    literal `exit N`/`return N` above 1 in code (128+signal for a trapped signal excepted)."""
    found = []
    for path in _template_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            code = COMMENT.sub("", line)
            for value in EXIT_LITERAL.findall(code):
                if int(value) > 1 and int(value) not in (129, 130, 143):
                    found.append(f"{path.name}:{n}: {line.strip()}")
    assert not found, found


@pytest.mark.parametrize(("name", "values"), _cases())
def test_a_rendered_script_defines_each_function_once(name: str, values: dict[str, object]) -> None:
    names = FUNCTION_DEF.findall(scripts.render(name, **values))
    assert len(names) == len(set(names)), sorted(n for n in set(names) if names.count(n) > 1)


def test_bash_json_expands_to_the_document_with_the_run_time_values() -> None:
    """The record/manifest of create.sh: known parts as data (quotes, $(...), backticks stay text), run
    time values from bash variables (JSON ones as they are, strings through json_str)."""
    import json

    doc = {"Notes": "it's \"quoted\" $(touch /tmp/x) `id` \\ \n", "n": [1, None, True],
           "Size": scripts.BashValue("size"), "nested": {"files": scripts.BashValue("files")},
           "Checksum": scripts.BashValue("checksum", string=True)}
    text = scripts.environment().from_string(
        "{{ bash_lib('json') }}\nsize=42\nfiles='[{\"path\":\"a\"}]'\nchecksum='q\"uote'\n"
        "printf '%s\\n' {{ doc | bash_json }}\n").render(doc=doc)
    done = subprocess.run(["bash", "-c", text], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {**doc, "Size": 42, "nested": {"files": [{"path": "a"}]},
                                       "Checksum": 'q"uote'}


def test_bash_json_takes_only_variable_names() -> None:
    with pytest.raises(ValueError, match="not a bash variable name"):
        scripts.BashValue("x; rm -rf /")


SHELL_SCRIPT = re.compile(r"(?m)^\s*(?:set -e|#!/bin/|if \[\[ )|; then$")


def test_no_bash_script_lives_in_a_python_string() -> None:
    """A remote script is a template (rendered, shellchecked here), never a Python string shellcheck
    never sees; a single command line (`cat -- PATH`, sudo's wrapper) is not a script. Docstrings
    (which quote scripts) do not count."""
    import ast

    package = Path(scripts.__file__).resolve().parent
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and SHELL_SCRIPT.search(node.value)):
                found.append(f"{path.relative_to(package)}:{node.lineno}: {node.value[:60]!r}")
    assert not found, found


BARE_ARRAY_AT = re.compile(r'"\$\{[A-Za-z_]\w*\[@\]\}"')
BARE_ARRAY_STAR = re.compile(r"\$\{[A-Za-z_]\w*\[\*\]\}")


def test_no_template_expands_an_array_that_bash_4_3_calls_unbound() -> None:
    """Before bash 4.4 (xenial runs 4.3), `"${a[@]}"` and `${a[*]}` of an empty array are unbound
    variables under `set -u`: every array is expanded as `${a[@]+"${a[@]}"}` or `${a[*]-}`. The
    lab's juju-2.8 hosts catch it on the paths the tests take; this catches it on every path."""
    bare = [
        f"{path.name}:{n}: {line.strip()}"
        for path in _template_files()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if BARE_ARRAY_STAR.search(line) or BARE_ARRAY_AT.search(line.replace('+"${', "+${"))
    ]
    assert not bare, bare
