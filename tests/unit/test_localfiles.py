"""localfiles.read_private_file: the one reader of the operator's secret files (sudo password file,
S3 credentials, identities) refuses what ssh(1) refuses of a private key, and a link, a FIFO, a file
too large; each refusal is one line with a hint and its exit code. And each caller uses it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jujubackup import crypt, localfiles, sudopassword
from jujubackup.errors import EXIT_NOT_FOUND, EXIT_REFUSED, JujuBackupError
from jujubackup.localfiles import read_private_file
from jujubackup.stores.s3 import read_credentials

IDENTITY = "AGE-SECRET-KEY-1" + "Q" * 58  # any text: the refusals come before it is parsed


def private(tmp_path: Path, text: str = "secret\n", mode: int = 0o600, name: str = "f") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def refusal(path: Path, **kwargs: int) -> JujuBackupError:
    with pytest.raises(JujuBackupError) as caught:
        read_private_file(path, "secret file", **kwargs)
    err = caught.value
    assert "\n" not in err.message and str(path) in err.message and "secret file" in err.message
    assert err.hint and "secret\n" not in err.message
    return err


def test_a_private_regular_file_of_this_user_is_read(tmp_path: Path) -> None:
    assert read_private_file(private(tmp_path), "secret file") == b"secret\n"
    assert read_private_file(private(tmp_path, mode=0o400), "secret file") == b"secret\n"


def test_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(JujuBackupError) as caught:
        read_private_file(tmp_path / "none", "secret file")
    assert caught.value.exit_code == EXIT_NOT_FOUND


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o660, 0o644])
def test_group_or_others_may_not_read_or_write_it(tmp_path: Path, mode: int) -> None:
    err = refusal(private(tmp_path, mode=mode))
    assert err.exit_code == EXIT_REFUSED and err.hint == f"chmod 600 {tmp_path / 'f'}"
    assert f"{mode:04o}" in err.message


def test_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(private(tmp_path))
    err = refusal(tmp_path / "link")
    assert err.exit_code == EXIT_REFUSED and "link" in err.message


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo", 0o600)
    err = refusal(tmp_path / "fifo")
    assert err.exit_code == EXIT_REFUSED and "not a regular file" in err.message


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    assert refusal(tmp_path / "d").exit_code == EXIT_REFUSED


def test_a_file_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = private(tmp_path)
    # tests/unit runs as `nobody` in CI, which cannot chown: the reader is told it runs as someone else
    me = os.geteuid()
    monkeypatch.setattr(localfiles.os, "geteuid", lambda: me + 1)
    err = refusal(path)
    assert err.exit_code == EXIT_REFUSED and "not owned by you" in err.message


def test_a_file_over_the_bound_is_refused(tmp_path: Path) -> None:
    path = private(tmp_path, "x" * 101)
    err = refusal(path, limit=100)
    assert err.exit_code == EXIT_REFUSED and "larger than 100 bytes" in err.message
    assert read_private_file(private(tmp_path, "x" * 100), "secret file", limit=100) == b"x" * 100


def test_the_sudo_password_file_is_read_through_it(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(private(tmp_path, "pw\n"))
    with pytest.raises(JujuBackupError) as caught:
        sudopassword.read_file(tmp_path / "link")
    assert caught.value.exit_code == EXIT_REFUSED and "sudo password file" in caught.value.message


def test_the_s3_credentials_file_is_read_through_it(tmp_path: Path) -> None:
    text = "[default]\naws_access_key_id = a\naws_secret_access_key = s3cr3t\n"
    with pytest.raises(JujuBackupError) as caught:
        read_credentials(private(tmp_path, text, 0o640), None)
    assert caught.value.exit_code == EXIT_REFUSED and "credentials file" in caught.value.message
    assert "s3cr3t" not in caught.value.message
    assert read_credentials(private(tmp_path, text), None)["aws_secret_access_key"] == "s3cr3t"


@pytest.mark.parametrize("mode", [0o640, 0o644])
def test_an_identity_group_or_others_can_read_is_refused_as_ssh_refuses_it(tmp_path: Path, mode: int) -> None:
    path = private(tmp_path, IDENTITY + "\n", mode)
    with pytest.raises(JujuBackupError) as caught:
        crypt.load_identities(path)
    assert caught.value.exit_code == EXIT_REFUSED and "identity file" in caught.value.message
    assert IDENTITY not in caught.value.message and caught.value.hint == f"chmod 600 {path}"
