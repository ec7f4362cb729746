"""prune --store (and run's store-retention): each controller's copies apart, the newest copy that
verifies always kept, incomplete copies never pruned (local stores: no root, no sshd)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from jujubackup import crypt
from jujubackup.catalog import parse_record
from jujubackup.cli import main
from jujubackup.operations.prune_store import StorePruneRequest, prune_store
from jujubackup.retention import Policy
from jujubackup.stores import Store
from jujubackup.stores.config import LocalStoreConfig
from jujubackup.stores.factory import open_store
from jujubackup.ui import UI
from tests.unit.archive_builders import V1_METADATA, ArchiveSpec

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
A_IDS = [f"202611{day:02d}-020000.{A}" for day in range(1, 11)]  # ten nightly copies
B_IDS = [f"202611{day:02d}-030000.{B}" for day in (5, 6, 7)]


def put(store: Store, backup_id: str, archive: bytes, recipients: tuple[str, ...] = ()) -> None:
    """Put `archive` into `store` as backup `backup_id`, through the store's own put protocol."""
    sha = hashlib.sha256(archive).hexdigest()
    raw = {**V1_METADATA, "ID": backup_id, "sha256": sha, "size": len(archive), "Size": len(archive)}
    record = parse_record(json.dumps(raw), "/var/lib/juju/backups", archive_size=len(archive))
    session = store.begin_put(backup_id, encrypted=bool(recipients), size=len(archive))
    writer = crypt.EncryptingWriter(session, [crypt.parse_recipient(r) for r in recipients]) if recipients \
        else session
    writer.write(archive)
    if isinstance(writer, crypt.EncryptingWriter):
        writer.close()
    session.commit(record.to_dict(), plain_sha256=sha, plain_size=len(archive), recipients=recipients)


def seeded(tmp_path: Path, recipients: tuple[str, ...] = ()) -> tuple[Store, Path]:
    archive = ArchiveSpec().write(tmp_path / "a.tar.gz").read_bytes()
    directory = tmp_path / "store"
    store = open_store("disk", LocalStoreConfig(kind="local", path=directory, encrypt_to=list(recipients)))
    for backup_id in A_IDS + B_IDS:
        put(store, backup_id, archive, recipients)
    return store, directory


def names(directory: Path) -> list[str]:
    copies = [p for p in directory.glob("*.tar.gz*") if not p.name.endswith(".part")]
    return sorted(p.name.split(".tar.gz")[0] for p in copies)


def test_each_controller_apart_and_a_dry_run_removes_nothing(tmp_path: Path) -> None:
    store, directory = seeded(tmp_path)
    result = prune_store(store, StorePruneRequest(Policy(last=2), dry_run=True), UI(quiet=True),
                         lambda c: True)
    kept = {r["id"] for r in result.rows() if r["action"] == "keep"}
    assert kept == {A_IDS[-1], A_IDS[-2], B_IDS[-1], B_IDS[-2]}
    assert {r["action"] for r in result.rows()} == {"keep", "would remove"}
    assert result.removed == [] and names(directory) == sorted(A_IDS + B_IDS)
    by_id = {r["id"]: r for r in result.rows()}
    assert by_id[A_IDS[-1]]["verified"] == "yes" and by_id[A_IDS[-2]]["verified"] == "-"
    # run's form: one controller's copies only
    only_b = prune_store(store, StorePruneRequest(Policy(last=1), group=B, verified=frozenset({B_IDS[-1]})),
                         UI(quiet=True), lambda c: True)
    assert sorted(only_b.removed) == B_IDS[:2] and names(directory) == sorted([*A_IDS, B_IDS[-1]])


def test_a_damaged_newest_copy_keeps_the_newest_that_verifies_incomplete_ones_stay(tmp_path: Path) -> None:
    store, directory = seeded(tmp_path)
    newest = directory / f"{A_IDS[-1]}.tar.gz"
    newest.write_bytes(newest.read_bytes()[:100])  # damaged after it was stored
    (directory / f"{A_IDS[0]}.json").unlink()  # incomplete: the archive without its sidecar
    result = prune_store(store, StorePruneRequest(Policy(last=1)), UI(quiet=True), lambda c: True)
    assert result.incomplete == [A_IDS[0]]
    assert names(directory) == sorted([A_IDS[0], A_IDS[-2], A_IDS[-1], B_IDS[-1]])
    rows = {r["id"]: r for r in result.rows()}
    assert rows[A_IDS[-1]]["verified"].startswith("FAILED") and rows[A_IDS[-1]]["reasons"] == ["last backup"]
    assert rows[A_IDS[-2]]["reasons"] == ["newest verified backup"] and rows[A_IDS[-2]]["verified"] == "yes"


def test_encrypted_copies_are_verified_in_full_only_with_an_identity(tmp_path: Path) -> None:
    identity = crypt.X25519Identity(os.urandom(32))
    key = tmp_path / "key.txt"
    key.write_text(f"# test\n{crypt.bech32_encode('AGE-SECRET-KEY-', identity.secret).upper()}\n")
    key.chmod(0o600)
    store, _ = seeded(tmp_path, (identity.recipient(),))
    blind = prune_store(store, StorePruneRequest(Policy(last=3), dry_run=True), UI(quiet=True),
                        lambda c: True)
    assert {r["id"]: r["verified"] for r in blind.rows()}[A_IDS[-1]].startswith("intact (encrypted")
    seeing = prune_store(store, StorePruneRequest(Policy(last=3), dry_run=True, identity=key), UI(quiet=True),
                         lambda c: True)
    assert {r["id"]: r["verified"] for r in seeing.rows()}[A_IDS[-1]] == "yes"


def test_prune_store_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, directory = seeded(tmp_path)
    config = tmp_path / "stores.yaml"
    config.write_text(f"stores:\n  disk: {{kind: local, path: {directory}}}\n")
    argv = ["prune", "--store", "disk", "--store-config", str(config), "--keep-last", "1"]
    assert main([*argv, "--dry-run", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["store"] == "disk" and len([b for b in doc["backups"] if b["action"] == "keep"]) == 2
    assert main(argv) == 2  # asks; no terminal
    assert names(directory) == sorted(A_IDS + B_IDS)
    assert main([*argv, "--yes"]) == 0
    assert names(directory) == sorted([A_IDS[-1], B_IDS[-1]])
    assert main(["-H", "ctl0", *argv, "--yes"]) == 2  # a store, not a controller
