"""The "already verified" sidecar stamp (issue 11): only an HMAC with the operator's own key over the
sidecar and the archive's identity lets upload / restore --archive skip verifying; a forged, foreign
or stale stamp means full verification."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from jujubackup import stamp
from jujubackup.local_archives import fully_verified, sidecar_path, write_sidecar
from jujubackup.operations.verify import verify_local
from tests.unit.archive_builders import VALID

VALID_ID = "20200225-041241.ffffffff-0000-1111-2222-333333333333"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def verified_copy(tmp_path: Path, name: str = "copy.tar.gz") -> Path:
    """A copy of the Juju 2.8 fixture that `verify FILE` passed (so its sidecar is stamped)."""
    path = tmp_path / name
    shutil.copyfile(VALID, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    write_sidecar(path, {"ID": VALID_ID, "sha256": digest, "size": path.stat().st_size}, digest)
    assert verify_local(path).ok
    return path


def sidecar(path: Path) -> dict[str, object]:
    return dict(json.loads(sidecar_path(path).read_text()))


def test_a_verified_archive_is_stamped_with_a_private_key(config: Path, tmp_path: Path) -> None:
    path = verified_copy(tmp_path)
    record = fully_verified(path)
    assert record is not None and record["ID"] == VALID_ID and "stamp" not in record
    key = config / "jujubackup" / "stamp.key"
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    assert key.read_text().strip() not in sidecar_path(path).read_text()


def test_a_forged_or_edited_stamp_is_not_trusted(config: Path, tmp_path: Path) -> None:
    path = verified_copy(tmp_path)
    genuine = sidecar(path)
    side = sidecar_path(path)
    # no stamp at all: the old plain "checks": "full" claim
    side.write_text(json.dumps({k: v for k, v in genuine.items() if k != "stamp"}))
    assert fully_verified(path) is None
    # stamped with someone else's key
    forged = {k: v for k, v in genuine.items() if k != "stamp"}
    side.write_text(json.dumps({**forged, "stamp": stamp.sign(b"k" * 32, forged)}))
    assert fully_verified(path) is None
    # a genuine stamp over other content
    side.write_text(json.dumps({**genuine, "Notes": "edited"}))
    assert fully_verified(path) is None
    side.write_text(json.dumps(genuine))
    assert fully_verified(path) is not None


def test_a_stale_stamp_is_not_trusted(config: Path, tmp_path: Path) -> None:
    path = verified_copy(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    moved = other / path.name
    shutil.copy2(path, moved)  # same bytes, size and mtime: another inode
    shutil.copy2(sidecar_path(path), sidecar_path(moved))
    assert fully_verified(moved) is None
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert fully_verified(path) is None


def test_a_key_others_can_read_or_a_linked_key_is_not_used(config: Path, tmp_path: Path) -> None:
    path = verified_copy(tmp_path)
    key = config / "jujubackup" / "stamp.key"
    key.chmod(0o644)
    assert fully_verified(path) is None
    key.chmod(0o600)
    assert fully_verified(path) is not None
    real = tmp_path / "real.key"
    key.rename(real)
    key.symlink_to(real)
    assert fully_verified(path) is None
