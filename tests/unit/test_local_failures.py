"""Ordinary failures on the operator's workstation get their documented exit code and a hint, never
"internal error (exit 1)" (issue 11): a malformed controllers.yaml, a full local disk during a
download (the partial file is kept for a resume), a missing directory, an unreadable file."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_REFUSED, EXIT_USAGE


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "text",
    [
        "- just\n- a list\n",
        "controllers: [a, b]\n",
        "controllers:\n  prod: just-a-string\n",
        "controllers:\n  prod:\n    api-endpoints: 10.0.0.1:17070\n",
        "controllers: {prod: {api-endpoints: [1: 2]}}\n  bad: [indent\n",
    ],
)
def test_a_malformed_controllers_yaml_is_a_usage_error(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "controllers.yaml").write_text(text)
    monkeypatch.setenv("JUJU_DATA", str(tmp_path))
    code, _, err = run(["-c", "prod", "list"], capsys)
    assert code == EXIT_USAGE, err
    assert "controllers.yaml" in err and "hint:" in err and "internal error" not in err


def test_a_non_utf8_controllers_yaml_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "controllers.yaml").write_bytes(b"controllers:\n  \xff\xfe: {}\n")
    monkeypatch.setenv("JUJU_DATA", str(tmp_path))
    code, _, err = run(["-c", "prod", "list"], capsys)
    assert code == EXIT_USAGE, err


def test_a_local_file_error_the_cli_did_not_expect_is_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main()'s safety net: an OSError about a local file that no operation typed is mapped by
    errno (here: EACCES -> exit 6), while one without a file name stays an internal error."""
    from jujubackup.cli import list_backups

    def unreadable(directory: Path, **_: object) -> list[object]:
        raise PermissionError(errno.EACCES, "Permission denied", str(directory / "a.tar.gz"))

    monkeypatch.setattr(list_backups, "list_local", unreadable)
    code, _, err = run(["list", "--local", str(tmp_path)], capsys)
    assert code == EXIT_REFUSED, err
    assert "Permission denied" in err and "hint:" in err and "internal error" not in err

    def bug(directory: Path, **_: object) -> list[object]:
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(list_backups, "list_local", bug)
    code, _, err = run(["list", "--local", str(tmp_path)], capsys)
    assert code == 1 and "internal error" in err
