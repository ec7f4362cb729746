"""Ordinary failures on the operator's workstation get their documented exit code and a hint, never
"internal error (exit 1)" (issue 11): a malformed controllers.yaml, a full local disk during a
download (the partial file is kept for a resume), a missing directory, an unreadable file."""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE, JujuBackupError
from jujubackup.host.ssh import SSHHost
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.operations.upload import upload
from jujubackup.ui import UI
from tests.unit.test_host_transfer import ID, archive, host, juju_machine, sshd, ui  # noqa: F401


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


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str = "1m") -> Iterator[Path]:
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_local_disk_is_refused_with_exit_6_and_the_partial_kept(
    host: SSHHost, ui: UI, tmp_path: Path  # noqa: F811
) -> None:
    source = archive(tmp_path)  # > 3 MiB, incompressible
    backups = tmp_path / "backups"
    upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    with tiny_filesystem(tmp_path / "small") as small:
        with pytest.raises(JujuBackupError, match="No space left") as caught:
            download(host, DownloadRequest(ID, directory=small, backup_dir=str(backups)), ui)
        assert caught.value.exit_code == EXIT_REFUSED
        assert caught.value.hint is not None and "resumes" in caught.value.hint
        assert (small / f"{ID}.tar.gz.part").exists() and not (small / f"{ID}.tar.gz").exists()


def test_a_missing_directory_is_not_found(host: SSHHost, ui: UI, tmp_path: Path) -> None:  # noqa: F811
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    with pytest.raises(JujuBackupError) as caught:
        download(host, DownloadRequest(ID, file=tmp_path / "gone" / "x.tar.gz", backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_NOT_FOUND
