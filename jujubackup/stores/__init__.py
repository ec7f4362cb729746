"""Stores: where copies of backups live off the controller (issue 17).

A store holds, per backup ID, one archive object and one sidecar record:

    <ID>.tar.gz          the archive as the controller made it (plain), or
    <ID>.tar.gz.age      the archive encrypted to the store's recipients (age v1, crypt/)
    <ID>.json            the sidecar: the controller's catalog record (Juju metadata keys, "sha256" and
                         "size" of the PLAINTEXT archive, "manifest", …) plus a "stored" block saying
                         what the store holds (see StoredBackup). Written last: a backup is in the
                         store iff its sidecar is (a put that died leaves only a partial, never a
                         record that lies).

Names inside a store are built from the validated backup ID only (`object_name`), never from text
of a record, an archive or a listing: data from a controller or a store never chooses a path or key.

How a copy is written (the same for every kind of store, so `run` can tee one stream from the
controller into several stores):

    session = store.begin_put(backup_id, encrypted=bool(recipients), size=record_size,
                              plain_sha256=record_sha256)
    # session.offset: stored bytes already there from an earlier, interrupted put (resume point);
    #                 the caller checks session.prefix_sha256 against the source's prefix, calls
    #                 session.restart() when they differ, and sends the stream from that byte on
    session.write(chunk) ...             # the stored bytes (ciphertext when encrypted), in order
    stored = session.commit(record, plain_sha256=..., plain_size=...)   # verify, then publish
    # or, on any failure: session.abort(keep=True)  # keep the partial for a resume
    # (an encrypted S3 put resumes with the key material it kept: session.material, crypt.KeyMaterial;
    #  operations/copy.py does all of this, tee'd into several stores)

`commit` checks what was written before anything is published: for a plain copy the SHA-256 and size
of the stored bytes must equal `record["sha256"]` / `record["size"]`; for an encrypted copy the
caller's `plain_sha256` / `plain_size` (hashed while encrypting) must equal them. On a mismatch the
partial is removed and VerifyError (exit 8) is raised; nothing is renamed or registered.

Reading back: `store.open(backup_id)` returns a binary stream of the stored bytes (decrypt with
crypt.DecryptingReader when `stored.encrypted`). `store.list_backups()` returns what the store holds;
`store.remove(backup_id)` deletes the object and its sidecar (sidecar first, so a half-removed backup
is never listed as complete).

Errors (every method): NotStoredError (a NotFoundError, 5) for a backup the store does not hold,
NotFoundError (5) for a missing bucket/directory, LockedError (7) for a local partial another put holds,
ConnectError (3) for credentials refused or an endpoint that does not answer, RefusedError (6) for
a local path that is a link or not a regular file, no space, permissions, VerifyError (8) as above.

Configuration is typed in stores/config.py (pydantic v2): StoreConfig = LocalStoreConfig |
S3StoreConfig; stores/factory.py's `open_store(name, config)` is the one factory (and `named_store`
finds a store by name in a config file). This module imports none of its submodules: they import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, BinaryIO, Protocol

from jujubackup.errors import NotFoundError, VerifyError
from jujubackup.metadata import is_backup_id

ARCHIVE_SUFFIX = ".tar.gz"
ENCRYPTED_SUFFIX = ".age"
SIDECAR_SUFFIX = ".json"
STORED_KEY = "stored"  # the sidecar block a store adds (see StoredBackup.from_sidecar)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class NotStoredError(NotFoundError):
    """The store does not hold that backup (exit 5) — the store itself answered: not a missing
    bucket or directory, which are plain NotFoundErrors."""


def object_name(backup_id: str, *, encrypted: bool) -> str:
    """Given a backup ID, return the archive's name in a store: `<ID>.tar.gz` or `<ID>.tar.gz.age`.
    Raise VerifyError (exit 8) when the ID is not of Juju's form (it came from hostile data)."""
    check_id(backup_id)
    return backup_id + ARCHIVE_SUFFIX + (ENCRYPTED_SUFFIX if encrypted else "")


def sidecar_name(backup_id: str) -> str:
    """Given a backup ID, return its sidecar's name in a store: `<ID>.json` (VerifyError as object_name)."""
    check_id(backup_id)
    return backup_id + SIDECAR_SUFFIX


def check_id(backup_id: str) -> str:
    """Return `backup_id` if it is of the form YYYYMMDD-hhmmss.<uuid>; else raise VerifyError (8)."""
    if not isinstance(backup_id, str) or not is_backup_id(backup_id):
        raise VerifyError(f"{backup_id!r} is not a backup ID (YYYYMMDD-hhmmss.<uuid>)")
    return backup_id


def id_of_name(name: str) -> tuple[str, bool] | None:
    """Given an object or file name found in a store, return (backup ID, encrypted) when it is an
    archive name this module makes (`<ID>.tar.gz` / `<ID>.tar.gz.age`), else None (ignored)."""
    encrypted = name.endswith(ARCHIVE_SUFFIX + ENCRYPTED_SUFFIX)
    base = name[: -len(ENCRYPTED_SUFFIX)] if encrypted else name
    if not base.endswith(ARCHIVE_SUFFIX):
        return None
    backup_id = base[: -len(ARCHIVE_SUFFIX)]
    return (backup_id, encrypted) if is_backup_id(backup_id) else None


@dataclass(frozen=True)
class StoredBackup:
    """One backup held by a store.

    `size` / `stored_sha256` are the stored bytes' (the ciphertext when `encrypted`); `sha256` /
    `plain_size` are the plaintext archive's, the catalog's (what verify and restore check after
    decrypting). `stored_at` is when the store's copy was completed (UTC). `record` is the sidecar
    (the catalog record + the "stored" block), None when the archive has no valid sidecar (then
    sha256 is "" and the copy is listed as incomplete/unverifiable, never used for a restore
    without a full verification). `recipients` are the age recipients it was encrypted to (public
    keys, as given in the config)."""

    store: str
    id: str
    name: str
    size: int
    stored_at: datetime | None
    encrypted: bool
    sha256: str = ""
    plain_size: int | None = None
    stored_sha256: str = ""
    recipients: tuple[str, ...] = ()
    record: dict[str, Any] | None = None
    problems: tuple[str, ...] = field(default=())

    def row(self) -> dict[str, Any]:
        """Return the `list --store NAME` row."""
        md = (self.record or {})
        return {
            "id": self.id,
            "store": self.store,
            "stored": self.stored_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.stored_at else "",
            "size": self.size,
            "encrypted": "age" if self.encrypted else "no",
            "sha256": self.sha256,
            "version": md.get("Version", "") if isinstance(md.get("Version", ""), str) else "",
            "notes": md.get("Notes", "") if isinstance(md.get("Notes", ""), str) else "",
            "complete": "yes" if self.record is not None
            else "no: " + "; ".join(self.problems or ("no sidecar",)),
        }


def stored_block(*, name: str, encrypted: bool, size: int, stored_sha256: str, plain_sha256: str,
                 plain_size: int, recipients: tuple[str, ...], stored_at: datetime) -> dict[str, Any]:
    """Return the sidecar's "stored" block (what the store holds for the record's backup)."""
    return {
        "file": name,
        "format": "age-v1" if encrypted else "plain",
        "size": size,
        "sha256": stored_sha256,
        "plain_sha256": plain_sha256,
        "plain_size": plain_size,
        "recipients": list(recipients),
        "stored_at": stored_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass(frozen=True)
class PutResult:
    """What a finished put wrote: the stored bytes (ciphertext when encrypted) and the plain archive
    they stand for, as the writer counted them."""

    backup_id: str
    encrypted: bool
    written: int
    stored_sha256: str
    plain_sha256: str
    plain_size: int
    recipients: tuple[str, ...] = ()


def checked_block(put: PutResult, record: dict[str, Any], *, name: str, where: str,
                  hint: str) -> dict[str, Any]:
    """Given a finished put and the catalog record it copies, return the sidecar's "stored" block
    (file `name`, stored now). Raise VerifyError (exit 8) naming `where` the copy went if the plain
    archive's size and SHA-256 (those of the stored bytes when not encrypted) are not the record's."""
    expected = (record.get("sha256"), record.get("size"))
    got = (put.plain_sha256, put.plain_size) if put.encrypted else (put.stored_sha256, put.written)
    if got != expected:
        raise VerifyError(
            f"the copy of {put.backup_id} {where} does not match the catalog: got {got[1]} bytes "
            f"sha256 {got[0]}, expected {expected[1]} bytes sha256 {expected[0]}",
            hint=hint,
        )
    return stored_block(name=name, encrypted=put.encrypted, size=put.written,
                        stored_sha256=put.stored_sha256, plain_sha256=put.plain_sha256,
                        plain_size=put.plain_size, recipients=put.recipients,
                        stored_at=datetime.now(timezone.utc))


def stored_problem(record: Any, backup_id: str, name: str) -> str | None:
    """Given a decoded sidecar and the archive it should describe, return why it cannot be used,
    or None: it must be an object naming this ID, with the plaintext sha256/size and a "stored" block
    naming this file, typed (64 hex digits, non-negative ints, a list of strings)."""
    if not isinstance(record, dict):
        return "sidecar is not a JSON object"
    if record.get("ID") != backup_id:
        return "sidecar names another backup"
    block = record.get(STORED_KEY)
    if not isinstance(block, dict):
        return "sidecar has no stored block"
    if block.get("file") != name:
        return "sidecar describes another file"
    for key in ("sha256", "plain_sha256"):
        if not (isinstance(block.get(key), str) and _HEX64.fullmatch(block[key])):
            return f"sidecar's stored {key} is not 64 hex digits"
    if block["plain_sha256"] != record.get("sha256"):
        return "sidecar's plaintext sha256 differs from its record's"
    for key in ("size", "plain_size"):
        value = block.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 63:
            return f"sidecar's stored {key} is not a non-negative integer"
    recipients = block.get("recipients", [])
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        return "sidecar's recipients are not a list of strings"
    return None


def parse_time(text: Any) -> datetime | None:
    """Return a UTC datetime of `%Y-%m-%dT%H:%M:%SZ` text, None for anything else."""
    from datetime import timezone

    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


class PutSession(Protocol):
    """One copy being written into a store (see the module docstring for the protocol)."""

    offset: int
    """Stored bytes already held from an interrupted put of the same object (0: start from the
    beginning): a local plain copy's partial. An S3 put is always 0: it resumes by not sending parts
    it holds again (an encrypted one too, with the key material it kept: `material`)."""

    prefix_sha256: str
    """SHA-256 of the `offset` bytes held ("" when offset is 0): the caller compares it with the
    source's prefix (transfer.remote_stat) before it resumes, and calls restart() when they differ."""

    def restart(self) -> None:
        """Drop what is held and start again from byte 0 (offset becomes 0)."""
        ...

    def write(self, data: bytes, /) -> int:
        """Append stored bytes; return len(data). Raise the store's typed error (the session is then
        unusable: call abort)."""
        ...

    def commit(self, record: dict[str, Any], *, plain_sha256: str, plain_size: int,
               recipients: tuple[str, ...] = ()) -> StoredBackup:
        """Verify what was written (module docstring), then publish: the object under its final
        name, then the sidecar (`record` + the "stored" block). Return what is now stored. Raise
        VerifyError (8) on a mismatch (the partial is removed, nothing published)."""
        ...

    def abort(self, *, keep: bool = True) -> None:
        """Stop this put. `keep`: leave the partial for the next put to resume (a local encrypted
        partial is removed all the same: it cannot be continued); otherwise remove it. Never raises
        for a missing partial."""
        ...


class Store(Protocol):
    """A place holding copies of backups (local directory, S3 bucket+prefix)."""

    name: str
    """The store's name in the config (shown in listings, metrics and errors)."""

    kind: str
    """"local" or "s3"."""

    recipients: tuple[str, ...]
    """The age recipients copies put here are encrypted to (from the config; empty: plain copies)."""

    def describe(self) -> str:
        """Return where the store is, for messages: a directory, or s3://bucket/prefix at endpoint."""
        ...

    def begin_put(self, backup_id: str, *, encrypted: bool, size: int | None = None,
                  plain_sha256: str | None = None) -> PutSession:
        """Start (or resume) writing backup `backup_id`'s archive; `size` is the archive's size when known
        (lets an S3 store pick its part size); `plain_sha256`, the
        record's, goes into an S3 object's metadata (commit checks it either way). Raise as listed in
        the module docstring; RefusedError (6) when the store already holds this backup with other
        content (a complete copy of the same backup is not an error: see `get`)."""
        ...

    def get(self, backup_id: str) -> StoredBackup:
        """Return backup `backup_id` as stored here (its sidecar validated; an archive without a valid
        sidecar is returned with record None and its problems). Raise NotStoredError (5) if absent."""
        ...

    def list_backups(self) -> list[StoredBackup]:
        """Return every backup archive in the store (oldest ID first), complete or not; names that are
        not archive names this module makes are ignored. Partial puts are not listed."""
        ...

    def open(self, backup_id: str) -> BinaryIO:
        """Return a binary stream (read, close; a context manager) of the stored bytes of
        `backup_id`, read sequentially without a full local copy. NotFoundError (5) if absent."""
        ...

    def remove(self, backup_id: str) -> None:
        """Delete `backup_id`'s sidecar, then its archive (and any partial put). NotFoundError (5)
        when the store holds nothing of it."""
        ...
