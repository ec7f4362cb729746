"""store_copy.copy_to_stores: one stream from the controller tee'd into several stores, verified
while it streams, committed only when it verified, read back; one store failing spares the others."""

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
from jujubackup.operations.store_copy import copy_to_stores
from jujubackup.stores import Store, open_store
from jujubackup.stores.config import LocalStoreConfig
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
    outcomes = copy_to_stores(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert [(o.ok, o.error) for o in outcomes] == [(True, None), (True, None)]
    assert (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz").read_bytes() == archive.read_bytes()
    sealed = (tmp_path / "sealed" / f"{BACKUP_ID}.tar.gz.age").read_bytes()
    plain = crypt.DecryptingReader(io.BytesIO(sealed), [identity]).read()
    assert plain == archive.read_bytes()
    assert outcomes[1].stored is not None and outcomes[1].stored.encrypted
    # a second copy of the same backup: the stores already hold it, nothing is written again
    again = copy_to_stores(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert all(o.ok and o.already for o in again)


def test_an_archive_that_does_not_verify_is_published_nowhere(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    record = record_of(archive, sha256="0" * 64)  # the catalog says other bytes
    stores = [local("plain", tmp_path / "plain"), local("other", tmp_path / "other")]
    outcomes = copy_to_stores(cast(Host, StreamingHost(archive)), record, stores, UI(quiet=True))
    assert [o.ok for o in outcomes] == [False, False]
    assert all(o.error is not None and o.error.exit_code == 8 for o in outcomes)
    assert not list((tmp_path / "plain").glob("*.tar.gz")) and not list((tmp_path / "other").glob("*.json"))


def test_one_broken_store_spares_the_others(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    (tmp_path / "not-a-dir").write_text("x")
    stores = [local("broken", tmp_path / "not-a-dir"), local("good", tmp_path / "good")]
    outcomes = copy_to_stores(cast(Host, StreamingHost(archive)), record_of(archive), stores, UI(quiet=True))
    assert not outcomes[0].ok and outcomes[0].error is not None and outcomes[0].error.exit_code == 2
    assert outcomes[1].ok and (tmp_path / "good" / f"{BACKUP_ID}.tar.gz").is_file()


def test_a_dropped_connection_fails_every_copy_and_a_plain_one_resumes(tmp_path: Path) -> None:
    archive = big_archive(tmp_path)
    store = local("plain", tmp_path / "plain")
    dropping = cast(Host, StreamingHost(archive, fail_after=131072))
    dropped = copy_to_stores(dropping, record_of(archive), [store], UI(quiet=True))
    assert not dropped[0].ok and dropped[0].error is not None and dropped[0].error.exit_code == 3
    part = tmp_path / "plain" / f"{BACKUP_ID}.tar.gz.part"
    assert part.stat().st_size == 131072 and not (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz").exists()
    resumed = copy_to_stores(cast(Host, StreamingHost(archive)), record_of(archive), [store], UI(quiet=True))
    assert resumed[0].ok
    assert (tmp_path / "plain" / f"{BACKUP_ID}.tar.gz").read_bytes() == archive.read_bytes()
