"""--help shows plain metavars (HOST, NAME, FILE, DIR, SECONDS, N, the choices), never typer's
`<list[str]>`; main() registers each verb once however often it runs."""

from __future__ import annotations

import re

import pytest

from jujubackup import cli

TYPE_LABEL = re.compile(r"<(str|path|float|int|int range|float range|list\[[^]]*\]|bool)>|<[a-z]+\|[a-z|]+>")


def help_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert cli.main([*args, "--help"]) == 0
    return capsys.readouterr().out


def test_global_options_show_plain_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys)
    for shown in ("-H, --host HOST", "-c, --controller NAME", "-i, --identity FILE", "-F, --ssh-config FILE",
                  "--known-hosts FILE", "--connect-timeout SECONDS", "--transfer auto|openssh|paramiko",
                  "--format tabular|json|yaml"):
        assert shown in text, text
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text)


@pytest.mark.parametrize("verb", list(cli.VERB_MODULES))
def test_no_verb_shows_a_type_label(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "list" if verb == "list_backups" else verb)
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text)
    assert "--backup-dir DIR" in text or "--backup-dir" not in text


def test_restore_help_names_its_arguments_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(capsys, "restore")
    assert "restore [OPTIONS] [ID]" in text
    assert "-t, --target HOST" in text and "--archive FILE" in text and "--parallel N" in text


def test_main_registers_each_verb_once(capsys: pytest.CaptureFixture[str]) -> None:
    help_of(capsys)
    before = len(cli.app.registered_commands)
    help_of(capsys)
    help_of(capsys, "list")
    assert len(cli.app.registered_commands) == before
