"""A forged "already verified" stamp does not let upload skip verifying (root: a local sshd)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from jujubackup import stamp
from jujubackup.errors import EXIT_VERIFY, JujuBackupError
from jujubackup.host.ssh import SSHHost
from jujubackup.local_archives import sidecar_path
from jujubackup.operations.upload import upload
from jujubackup.ui import UI
from tests.host.test_host_transfer import host, juju_machine, sshd, ui  # noqa: F401
from tests.unit.archive_builders import VALID

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

VALID_ID = "20200225-041241.ffffffff-0000-1111-2222-333333333333"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_upload_of_a_damaged_archive_with_a_forged_stamp_verifies_and_refuses(
    host: SSHHost, ui: UI, config: Path, tmp_path: Path  # noqa: F811
) -> None:
    path = tmp_path / "damaged.tar.gz"
    data = bytearray(VALID.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    digest = hashlib.sha256(bytes(data)).hexdigest()
    info = path.stat()
    claim = {"ID": VALID_ID, "sha256": digest, "size": info.st_size, "local": {
        "file": path.name, "sha256": digest, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
        "inode": info.st_ino, "checks": "full", "unpacked_bytes": 1, "has_oplog": False}}
    sidecar_path(path).write_text(json.dumps({**claim, "stamp": stamp.sign(b"attacker" * 4, claim)}))
    backups = tmp_path / "backups"
    with pytest.raises(JujuBackupError) as caught:
        upload(host, juju_machine(path, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_VERIFY
    assert not list(backups.glob("*.json"))
