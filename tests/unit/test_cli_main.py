"""The CLI's error mapping: exit codes and one-line messages for what escapes a verb."""

from __future__ import annotations

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_INTERRUPTED, EXIT_USAGE, RefusedError


def _interrupting() -> None:
    raise KeyboardInterrupt


def _refusing() -> None:
    raise RefusedError("need 5.0 GiB, have 1.0 GiB", hint="free some space or give --force")


@pytest.fixture(scope="module", autouse=True)
def test_verbs() -> None:
    cli.app.command("test-interrupt", hidden=True)(_interrupting)
    cli.app.command("test-refuse", hidden=True)(_refusing)


def test_ctrl_c_in_a_verb_exits_130_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["test-interrupt"]) == EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert "interrupted" in captured.err
    assert captured.out == ""


def test_typed_error_prints_one_line_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["test-refuse"]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: need 5.0 GiB, have 1.0 GiB", "hint: free some space or give --force"]


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--no-such-flag"]) == EXIT_USAGE
    assert "No such option" in capsys.readouterr().err


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "130  interrupted" in out



def test_paramiko_log_records_stay_off_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """A banner timeout made paramiko log "Exception (client): ..." through Python's last-resort
    handler, beside the CLI's own one-line error."""
    import logging

    from jujubackup import cli

    cli._silence_library_logs()
    logging.getLogger("paramiko.transport").error("Exception (client): Error reading SSH protocol banner")
    assert capsys.readouterr().err == ""
