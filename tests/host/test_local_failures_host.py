"""Local failures during a transfer with a real SSH host (root: a local sshd and a tiny tmpfs):
a full local disk keeps the partial file (exit 6), a missing directory is exit 5."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup.errors import EXIT_NOT_FOUND, EXIT_REFUSED, JujuBackupError
from jujubackup.host.ssh import SSHHost
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.operations.upload import upload
from jujubackup.ui import UI
from tests.host.test_host_transfer import ID, archive, host, juju_machine, sshd, ui  # noqa: F401

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


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
