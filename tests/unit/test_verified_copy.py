"""verified_copy.copy_and_verify (run's copy and verify stages, on operations/copy.py): one stream
tee'd into several stores and verified while it streams, each copy read back; one store failing
spares the others; an archive that does not verify is left in no store."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, cast

from jujubackup import crypt
from jujubackup.catalog import CatalogRecord, parse_record
from jujubackup.errors import ConnectError
from jujubackup.host.base import Host
from jujubackup.operations.verified_copy import copy_and_verify
from jujubackup.stores import Store
from jujubackup.stores.config import LocalStoreConfig
from jujubackup.stores.factory import open_store
from jujubackup.ui import UI
from tests.unit.archive_builders import MODEL_UUID, V1_METADATA, ArchiveSpec, bson_file

BACKUP_ID = f"20261126-060001.{MODEL_UUID}"


class StreamingHost:
    """Stands in for a connected controller: `get` streams a local file in 64 KiB chunks (and can
    drop the connection after `fail_after` bytes, as a dead SSH session does)."""

    name = "ctl0"

    def __init__(self, archive: Path, fail_after: int | None = None) -> None:
        self.archive = archive
        self.fail_after = fail_after

    def get(self, path: str, sink: Any, *, offset: int = 0, progress: Any = None,
            size: int | None = None) -> int:
        data = self.archive.read_bytes()[offset:]
        sent = 0
        for start in range(0, len(data), 65536):
            if self.fail_after is not None and sent >= self.fail_after:
                raise ConnectError("connection to ctl0 lost")
            sink.write(data[start:start + 65536])
            sent += len(data[start:start + 65536])
        return sent


def record_of(archive: Path, sha256: str | None = None) -> CatalogRecord:
    digest = sha256 or hashlib.sha256(archive.read_bytes()).hexdigest()
    size = archive.stat().st_size
    raw = {**V1_METADATA, "ID": BACKUP_ID, "sha256": digest, "size": size, "Size": size}
    return parse_record(json.dumps(raw), "/var/lib/juju/backups", archive_size=archive.stat().st_size)


def big_archive(tmp_path: Path) -> Path:
    spec = ArchiveSpec()
    spec.dump["juju/blobs.bson"] = bson_file({"_id": 1, "blob": os.urandom(300_000)})  # several chunks
    return spec.write(tmp_path / "a.tar.gz")


def local(name: str, path: Path, recipients: tuple[str, ...] = ()) -> Store:
    return open_store(name, LocalStoreConfig(kind="local", path=path, encrypt_to=list(recipients)))


def test_one_stream_into_a_plain_and_an_encrypted_store(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    identity = crypt.X25519Identity(os.urandom(32))
    sealed_store = local("sealed", tmp_path / "sealed", (identity.recipient(),))
    stores = [local("plain", tmp_path / "plain"), sealed_store]
    copies = copy_and_verify(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert [(c.ok, c.error, c.stream_verified) for c in copies] == [(True, "", True), (True, "", True)]
    assert (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz").read_bytes() == archive.read_bytes()
    sealed = (tmp_path / "sealed" / f"{BACKUP_ID}.tar.gz.age").read_bytes()
    assert crypt.DecryptingReader(io.BytesIO(sealed), [identity]).read() == archive.read_bytes()
    assert copies[1].encrypted and not copies[0].encrypted
    # again: the stores hold it already; read back only (nothing streamed, nothing verified in passing)
    again = copy_and_verify(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert [(c.ok, c.already_present, c.stream_verified) for c in again] == [(True, True, False)] * 2
    # a stored copy that changed since: the read-back catches it (exit 8)
    plain = tmp_path / "plain" / f"{BACKUP_ID}.tar.gz"
    stored = plain.read_bytes()
    plain.write_bytes(stored[:-1] + bytes([stored[-1] ^ 1]))
    changed = copy_and_verify(cast(Host, StreamingHost(archive)), record_of(archive), stores[:1],
                              UI(quiet=True))
    assert (changed[0].ok, changed[0].exit_code) == (False, 8)
    assert "read back from store plain is not what was stored" in changed[0].error


def test_an_archive_that_does_not_verify_is_left_in_no_store(tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar.gz"
    spec = ArchiveSpec()
    spec.dump["juju/machines.bson"] = b"\x05\x00\x00"  # not BSON: the stream's verification fails
    spec.write(archive)
    stores = [local("plain", tmp_path / "plain"), local("other", tmp_path / "other")]
    copies = copy_and_verify(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert [(c.ok, c.exit_code) for c in copies] == [(False, 8), (False, 8)]
    assert "did not verify while it was copied" in copies[0].error
    assert not list((tmp_path / "plain").glob("*.tar.gz")) and not list((tmp_path / "other").glob("*.json"))


def test_one_broken_store_spares_the_others(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    (tmp_path / "not-a-dir").write_text("x")
    stores = [local("broken", tmp_path / "not-a-dir"), local("good", tmp_path / "good")]
    copies = copy_and_verify(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert (copies[0].ok, copies[0].exit_code) == (False, 2)
    assert copies[1].ok and (tmp_path / "good" / f"{BACKUP_ID}.tar.gz").is_file()


def test_a_dropped_connection_fails_every_copy(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    stores = [local("plain", tmp_path / "plain"), local("other", tmp_path / "other")]
    dropping = cast(Host, StreamingHost(archive, fail_after=131072))
    copies = copy_and_verify(dropping, record_of(archive), stores, UI(quiet=True))
    assert [(c.ok, c.exit_code) for c in copies] == [(False, 3), (False, 3)]
    assert not (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz").exists()
    assert (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz.part").stat().st_size == 131072  # kept to resume
