"""info: one stored backup's record, by ID, unique prefix or `latest`."""

from __future__ import annotations

from typing import Any

from jujubackup import archive
from jujubackup.catalog import Catalog, CatalogRecord
from jujubackup.errors import VerifyError
from jujubackup.host.base import Connector
from jujubackup.local_archives import read_sidecar
from jujubackup.metadata import parse_metadata_json
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.sources import Source, plaintext, resolve
from jujubackup.ui import UI


def info(via: Connector, ui: UI, ref: str, backup_dir: str = DEFAULT_BACKUP_DIR) -> CatalogRecord:
    """Return the record `ref` names. Raise NotFoundError (exit 5) if none or ambiguous."""
    host = connect_catalog(via, ui, backup_dir, holding=[ref])
    try:
        ui.info(f"catalog of {host.name}:{backup_dir}")
        record = Catalog(host, backup_dir).get(ref)
    finally:
        host.close()
    if not record.archive_present:
        ui.warn(f"the archive {record.path} of {record.id} is missing")
    return record


HIDDEN = ("CACert", "CAPrivateKey", "stamp")  # secrets (never in a sidecar we write) and the HMAC


def info_archive(source: Source) -> dict[str, Any]:
    """Given a local archive (plain, or age-encrypted with source.identity) or a store's copy, return
    what `info` shows: a store's copy from its sidecar (the catalog record and the "stored" block, no
    decryption needed, no secret in it); a local file from its sidecar when valid, else from its own
    metadata.json and manifest.json, read from the (decrypted) stream up to those members only.
    Raise NotFoundError (5), UsageError (2) for an encrypted file without --identity, DecryptError (8)."""
    if source.store is not None:
        stored = resolve(source.store, source.ref or "latest")
        assert stored.record is not None
        data = {k: v for k, v in stored.record.items() if k not in (*HIDDEN, "local")}
        return {**data, "store": source.store.name, "where": source.store.describe()}
    assert source.path is not None
    record = read_sidecar(source.path)
    with plaintext(source) as opened:
        if record is not None:
            data = {k: v for k, v in record.items() if k not in HIDDEN}
            return {**data, "file": str(source.path), "encrypted": opened.encrypted}
        contents = archive.read_members_stream(opened.stream, [archive.METADATA, archive.MANIFEST],
                                               label=opened.label)
    meta_text = contents.files.get(archive.METADATA)
    if meta_text is None:
        raise VerifyError(f"{source.path} has no juju-backup/metadata.json")
    out: dict[str, Any] = {**parse_metadata_json(meta_text).to_api_dict(), "file": str(source.path),
                           "encrypted": opened.encrypted}
    if archive.MANIFEST in contents.files:
        manifest = archive.parse_manifest(contents.files[archive.MANIFEST])
        out["manifest"] = {k: v for k, v in manifest.items() if k != "files"}
        out["manifest"]["files"] = len(manifest.get("files", []) or [])
    return out
