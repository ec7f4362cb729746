"""restore-receive and restore-stage unpack the pushed archive as root: an archive cannot plant
modes there (setuid, world-writable), only the verified root.tar keeps its modes (restore-untar).
Meaningful as root (tar keeps modes for root by default), as `make test` runs it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from jujubackup import scripts
from tests.unit.restore_script_samples import RESTORE_SAMPLES


def _archive() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, mode, kind in (("juju-backup", 0o777, tarfile.DIRTYPE),
                                 ("juju-backup/dump", 0o777, tarfile.DIRTYPE),
                                 ("juju-backup/root.tar", 0o4777, tarfile.REGTYPE),
                                 ("juju-backup/dump/planted", 0o6755, tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, 4242, 4242
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return raw.getvalue()


def _modes(unpacked: Path) -> dict[str, int]:
    return {str(p.relative_to(unpacked)): p.stat().st_mode & 0o7777 for p in sorted(unpacked.rglob("*"))}


def _assert_no_planted_modes(unpacked: Path) -> None:
    modes = _modes(unpacked)
    assert set(modes) == {"juju-backup", "juju-backup/dump", "juju-backup/root.tar",
                          "juju-backup/dump/planted"}
    for name, mode in modes.items():
        assert mode & 0o7077 == 0, f"{name} has mode {mode:o}"  # no setuid/setgid/sticky, nothing for others
        assert (unpacked / name).stat().st_uid != 4242


def test_receive_unpacks_without_the_archives_modes(tmp_path: Path) -> None:
    text = scripts.render("restore-receive", journal_dir=str(tmp_path / "j"))
    done = subprocess.run(["bash", "-c", text], input=_archive(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    _assert_no_planted_modes(tmp_path / "j/unpacked")


@pytest.mark.parametrize("check_sha256", [True, False])
def test_stage_unpacks_without_the_archives_modes(tmp_path: Path, check_sha256: bool) -> None:
    data = _archive()
    journal, backups = tmp_path / "j", tmp_path / "backups"
    (journal / "steps").mkdir(parents=True)
    backups.mkdir()
    (journal / "archive.tar.gz").write_bytes(data)
    values = {**RESTORE_SAMPLES["restore-stage"][0], "journal_dir": str(journal), "backup_dir": str(backups),
              "sha256": hashlib.sha256(data).hexdigest(), "overlay_sha256": "", "check_sha256": check_sha256,
              "use_stream": False}
    done = subprocess.run(["bash", "-c", scripts.render("restore-stage", **values)], capture_output=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    _assert_no_planted_modes(journal / "unpacked")
