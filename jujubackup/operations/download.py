"""download ID [FILE]: stream a stored archive to this workstation, checksum-verified and resumable.

Flow: resolve the ID in the controller's catalog -> choose the destination -> resume a partial
`<dest>.part` if its bytes match the controller's copy -> stream the rest (1 MiB chunks, SHA-256 on
the fly, optional bandwidth limit; through OpenSSH and unthrottled, `ssh` writes into the `.part`
itself and the SHA-256 reads it back behind it: transfer.HashingSink.direct_file) -> rename into
place only when size and SHA-256 match the catalog -> write the `<ID>.json` sidecar. The file and
sidecar are 0600.

The controller's record never chooses a local path: the file name is `<ID>.tar.gz`, built from the
record's validated ID (catalog.archive_file_name), in the directory the operator chose; the partial
file is opened without following links (transfer.open_private) and the sidecar goes through a
private temp file (local_archives.write_sidecar).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jujubackup.catalog import Catalog, CatalogRecord
from jujubackup.errors import NotFoundError, RefusedError, VerifyError, local_os_error
from jujubackup.host.base import Connector, Host
from jujubackup.local_archives import prepare_directory, write_sidecar
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.transfer import HashingSink, Throttle, hash_prefix, open_private, remote_stat
from jujubackup.ui import UI

PART_SUFFIX = ".part"


@dataclass(frozen=True)
class DownloadRequest:
    """What to download and where: `file` wins over `directory`; default ./<ID>.tar.gz."""

    ref: str
    file: Path | None = None
    directory: Path | None = None
    bwlimit: int | None = None
    backup_dir: str = DEFAULT_BACKUP_DIR


@dataclass(frozen=True)
class DownloadResult:
    id: str
    path: Path
    sidecar: Path
    size: int
    sha256: str
    resumed_from: int
    already_present: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "file": str(self.path), "sidecar": str(self.sidecar), "size": self.size,
                "sha256": self.sha256, "resumed-from": self.resumed_from,
                "already-present": self.already_present}


def download(host: Host, request: DownloadRequest, ui: UI) -> DownloadResult:
    """Given a connected controller, download the archive `request.ref` names; return the result.

    Raise NotFoundError (5) for an unknown ID or a missing destination directory, VerifyError (8)
    for an invalid record or when the received bytes do not match the catalog (the partial file is
    removed, nothing is renamed), RefusedError (6) when the destination exists with other content,
    a link or non-regular file sits at `<file>.part`, or the local disk is full (the partial is
    kept for a resume), ConnectError (3) when the connection drops (the partial is kept).
    """
    record = Catalog(host, request.backup_dir).get(request.ref)
    if request.directory is not None:
        prepare_directory(request.directory, "--dir")
    dest = destination(request, record)
    part = dest.with_name(dest.name + PART_SUFFIX)
    if dest.exists():
        return _already_there(dest, record, ui)
    hasher, offset = _resume_point(host, record, part, ui)
    try:
        with open_private(part, append=True, readable=True) as fh, ui.transfer(
            f"download {record.id[:15]}", record.size, offset
        ) as advance:
            sink = HashingSink(fh, hasher, Throttle(request.bwlimit))
            host.get(record.path, sink, offset=offset, progress=advance,  # type: ignore[arg-type]
                     size=record.size - offset)
            ui.debug(f"streamed via {host.streams_via}")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        failed = local_os_error(err, f"writing {part}")
        failed.hint = (f"{failed.hint}; the partial file is kept: the same download resumes"
                       if part.exists() else failed.hint)
        raise failed from err
    _check_and_place(part, dest, record, hasher.hexdigest())
    sidecar = write_sidecar(dest, record.to_dict(), record.sha256)
    ui.info(f"downloaded {record.id} to {dest} ({record.size} bytes, sha256 {record.sha256[:16]}…)")
    return DownloadResult(record.id, dest, sidecar, record.size, record.sha256, offset)


def destination(request: DownloadRequest, record: CatalogRecord) -> Path:
    """Return where the archive goes: FILE, else DIR/<ID>.tar.gz, else ./<ID>.tar.gz (the name is
    `record.archive`, which parse_record built from the validated ID: one path component, never the
    record's text). Raise NotFoundError (exit 5) if the file's directory does not exist."""
    if "/" in record.archive or record.archive in ("", ".", ".."):  # parse_record guarantees it
        raise VerifyError(f"backup {record.id} has an unsafe archive name")
    if request.file is not None:
        dest = request.file / record.archive if request.file.is_dir() else request.file
    else:
        dest = (request.directory or Path.cwd()) / record.archive
    if not dest.parent.is_dir():
        raise NotFoundError(f"directory {dest.parent} does not exist",
                            hint="create it first, or give --dir DIR (created if missing)")
    return dest


def _already_there(dest: Path, record: CatalogRecord, ui: UI) -> DownloadResult:
    """Accept an existing destination only if it is this archive (refresh its sidecar)."""
    size = dest.stat().st_size
    digest = hash_prefix(dest, size).hexdigest() if size == record.size else ""
    if digest != record.sha256:
        raise RefusedError(
            f"{dest} already exists and is not backup {record.id}",
            hint="give another FILE or --dir, or remove the file",
        )
    sidecar = write_sidecar(dest, record.to_dict(), record.sha256)
    ui.info(f"{dest} is already backup {record.id} (sha256 matches)")
    return DownloadResult(record.id, dest, sidecar, size, digest, size, already_present=True)


def _resume_point(host: Host, record: CatalogRecord, part: Path, ui: UI) -> tuple[Any, int]:
    """Return (sha256 over the kept prefix, offset): keep a partial whose bytes match the remote copy.
    Raise RefusedError (exit 6) if `part` is a link or not a regular file (never read or followed)."""
    try:
        info = part.lstat()
    except FileNotFoundError:
        return hashlib.sha256(), 0
    if not stat.S_ISREG(info.st_mode):
        raise RefusedError(
            f"{part} is a symbolic link or not a regular file: not writing through it",
            hint="remove it (jujubackup never makes one there), or choose another FILE or --dir",
        )
    have = info.st_size
    if have == 0:
        return hashlib.sha256(), 0
    if have <= record.size:
        local = hash_prefix(part, have)
        remote = remote_stat(host, record.path, prefix=have)
        if remote.sha256 == local.hexdigest():
            ui.info(f"resuming download of {record.id} at byte {have} of {record.size}")
            return local, have
    ui.warn(f"partial file {part} does not match backup {record.id}; starting over")
    part.unlink()
    return hashlib.sha256(), 0


def _check_and_place(part: Path, dest: Path, record: CatalogRecord, sha256: str) -> None:
    """Rename part -> dest if its size and SHA-256 match the record; else remove it, raise VerifyError."""
    size = part.stat().st_size
    if size != record.size or sha256 != record.sha256:
        part.unlink()
        raise VerifyError(
            f"downloaded {record.id} does not match the catalog: got {size} bytes sha256 {sha256}, "
            f"expected {record.size} bytes sha256 {record.sha256}",
            hint="the stored copy or the transfer is damaged; run `jujubackup verify "
            f"{record.id}` on the controller, then download again",
        )
    part.chmod(0o600)
    part.replace(dest)


def run_download(via: Connector, ui: UI, request: DownloadRequest) -> DownloadResult:
    """Connect to the first controller of the connector, download, and close. Errors as `download`."""
    host = connect_catalog(via, ui, request.backup_dir, holding=[request.ref])
    try:
        return download(host, request, ui)
    finally:
        host.close()


def run_store_copy(via: Connector, ui: UI, ref: str, directory: Path | None,
                   store_name: str | None, store_config: Path | None, encrypt_to: list[str] | None,
                   bwlimit: int | None, backup_dir: str) -> dict[str, Any]:
    """`download --encrypt-to R… [--dir DIR]` (a local store over DIR, default the current dir) or
    `download --store NAME` (encrypted to `encrypt_to` when given, else to the store's recipients):
    copy the backup into that store through operations.copy; return the copy's summary (the file or
    object under "file"). Raise the copy's error (nothing published on a mismatch)."""
    from jujubackup.operations.copy import run_copy
    from jujubackup.stores import Store
    from jujubackup.stores.config import LocalStoreConfig, cli_recipients
    from jujubackup.stores.factory import named_store, open_store

    store: Store
    if store_name is not None:
        store = named_store(store_config, store_name, encrypt_to=encrypt_to)
    else:
        recipients = cli_recipients(encrypt_to or [])
        store = open_store("download", LocalStoreConfig(kind="local", path=directory or Path.cwd(),
                                                        encrypt_to=recipients))
    record, outcomes = run_copy(via, ui, ref, [store], backup_dir=backup_dir, bwlimit=bwlimit)
    outcome = outcomes[0]
    if outcome.error is not None:
        raise outcome.error
    assert outcome.stored is not None
    where = store.describe().rstrip("/")
    summary = outcome.as_dict()
    summary["id"] = record.id
    summary["file"] = f"{where}/{outcome.stored.name}" if store.kind == "local" else \
        f"{store.describe().split(' at ')[0]}{outcome.stored.name}"
    return summary
