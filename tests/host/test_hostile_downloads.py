"""download against a controller whose record lies (issue 11): over a real SSHHost (throwaway sshd on
127.0.0.1) with the catalog in a temporary backup dir. The record never chooses a local path, a
planted link is never written through, a bad record is skipped by the listing and refused by name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from jujubackup.catalog import Catalog
from jujubackup.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_VERIFY, JujuBackupError
from jujubackup.host.ssh import SSHHost
from jujubackup.local_archives import sidecar_path
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.operations.upload import upload
from jujubackup.ui import UI
from tests.host.test_host_transfer import ID, archive, host, juju_machine, sshd, ui  # noqa: F401

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

OTHER = "20261127-060001.ffffffff-0000-1111-2222-333333333333"


def stored(host: SSHHost, ui: UI, tmp_path: Path) -> tuple[Path, Path]:  # noqa: F811
    """Upload a valid archive into a fresh backup dir; return (source file, backup dir)."""
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    return source, backups


def tamper(backups: Path, backup_id: str = ID, **fields: Any) -> None:
    record_file = backups / f"{backup_id}.json"
    record = json.loads(record_file.read_text())
    record.update(fields)
    record_file.write_text(json.dumps(record))


def everything_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("where", ["absolute", "dotdot", "pth"])
def test_a_record_naming_another_path_writes_nothing_anywhere(
    host: SSHHost, ui: UI, tmp_path: Path, where: str  # noqa: F811
) -> None:
    _, backups = stored(host, ui, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    venv = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    venv.mkdir(parents=True)
    target = {
        "absolute": str(tmp_path / "elsewhere.tar.gz"),
        "dotdot": "../escaped.tar.gz",
        "pth": str(venv / "evil.pth"),
    }[where]
    tamper(backups, archive=target)
    before = everything_under(tmp_path)
    for ref in ("latest", ID, ID[:12]):
        with pytest.raises(JujuBackupError, match="invalid and was not used") as caught:
            download(host, DownloadRequest(ref, directory=out, backup_dir=str(backups)), ui)
        assert caught.value.exit_code == EXIT_VERIFY
    assert everything_under(tmp_path) == before
    assert not list(out.iterdir()) and not list(venv.iterdir())


def test_a_bad_record_is_skipped_by_the_listing_and_refused_by_name(
    host: SSHHost, ui: UI, tmp_path: Path  # noqa: F811
) -> None:
    _, backups = stored(host, ui, tmp_path)
    bad = backups / f"{OTHER}.json"
    text = (backups / f"{ID}.json").read_text().replace(ID, OTHER)
    bad.write_text(text.replace('"size":', '"size":"big","x":'))
    listing = Catalog(host, str(backups)).listing()
    assert [r.id for r in listing.records] == [ID]
    assert len(listing.broken) == 1 and OTHER in listing.broken[0] and "size" in listing.broken[0]
    out = tmp_path / "out"
    with pytest.raises(JujuBackupError, match=f"record of backup {OTHER} .* invalid") as caught:
        download(host, DownloadRequest(OTHER, directory=out, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_VERIFY
    # `latest` does not silently mean the older valid backup when the newest record is bad
    with pytest.raises(JujuBackupError, match="invalid") as latest:
        download(host, DownloadRequest("latest", directory=out, backup_dir=str(backups)), ui)
    assert latest.value.exit_code == EXIT_VERIFY
    got = download(host, DownloadRequest(ID, directory=out, backup_dir=str(backups)), ui)
    assert got.path == out / f"{ID}.tar.gz"
    assert (out.stat().st_mode & 0o777) == 0o700  # --dir was created, private


def test_a_record_stored_under_another_name_is_not_used(host: SSHHost, ui: UI, tmp_path: Path) -> None:  # noqa: F811
    _, backups = stored(host, ui, tmp_path)
    (backups / f"{ID}.json").rename(backups / f"{OTHER}.json")
    listing = Catalog(host, str(backups)).listing()
    assert listing.records == [] and "another file name" in listing.broken[0]


def test_a_link_planted_at_the_part_path_is_not_written_through(
    host: SSHHost, ui: UI, tmp_path: Path  # noqa: F811
) -> None:
    _, backups = stored(host, ui, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (out / f"{ID}.tar.gz.part").symlink_to(victim)
    with pytest.raises(JujuBackupError, match="symbolic link") as caught:
        download(host, DownloadRequest(ID, directory=out, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_REFUSED
    assert victim.read_text() == "precious\n"
    assert not (out / f"{ID}.tar.gz").exists()
    os.mkfifo(out / "fifo.part")
    with pytest.raises(JujuBackupError, match="not a regular file"):
        download(host, DownloadRequest(ID, file=out / "fifo", backup_dir=str(backups)), ui)


def test_links_planted_at_the_sidecar_paths_are_not_written_through(
    host: SSHHost, ui: UI, tmp_path: Path  # noqa: F811
) -> None:
    source, backups = stored(host, ui, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    victims = [tmp_path / "victim-tmp", tmp_path / "victim-sidecar"]
    for victim in victims:
        victim.write_text("precious\n")
    (out / f".{ID}.json.tmp").symlink_to(victims[0])
    (out / f"{ID}.json").symlink_to(victims[1])
    got = download(host, DownloadRequest(ID, directory=out, backup_dir=str(backups)), ui)
    assert got.path.read_bytes() == source.read_bytes()
    assert [v.read_text() for v in victims] == ["precious\n", "precious\n"]
    side = sidecar_path(got.path)
    assert not side.is_symlink() and json.loads(side.read_text())["ID"] == ID
    assert side.stat().st_mode & 0o777 == 0o600


def test_a_missing_directory_for_file_is_not_found_not_a_crash(
    host: SSHHost, ui: UI, tmp_path: Path  # noqa: F811
) -> None:
    _, backups = stored(host, ui, tmp_path)
    with pytest.raises(JujuBackupError, match="does not exist") as caught:
        missing = tmp_path / "no" / "such" / "x.tar.gz"
        download(host, DownloadRequest(ID, file=missing, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_NOT_FOUND
