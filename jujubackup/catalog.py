"""The remote catalog: backups stored on a controller under its backup dir (default /var/lib/juju/backups).

Layout (dir 0700, files 0600):
    <ID>.tar.gz            the archive (DESIGN.md §4)
    <ID>.json              the record: Juju's FormatVersion 1 metadata keys (ID, Checksum, Size, Stored, …
                           filled) + "sha256", "size", "archive" (<ID>.tar.gz), "filename" (Juju's
                           juju-backup-YYYYMMDD-HHMMSS.tar.gz name) and a "manifest" summary.
                           Written last, by rename: a backup is registered iff its record exists.
    .jujubackup.lock       holder record of the controller lock (flock on the dir is the lock itself)
    .tmp-<ID>/             create's staging dir (removed by its EXIT trap)
    .upload-<KEY>.tar.gz.part  a partial upload (KEY: the ID or file-…): listed, resumed, `remove KEY`
    .jujubackup-dir        marker: the dir is jujubackup's own (lib/lock's claim_backup_dir refuses any
                           other dir holding files it did not make, and system dirs)

Remote scripts taking the lock use the bash library's `lock` (remote_scripts/lib/lock.bash.j2:
`lock_acquire OP HOLDER` / `lock_release`; exit RC_LOCKED when held); `lock_error(err)` turns that into a
LockedError (exit 7) naming the holder.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jujubackup import scripts
from jujubackup.errors import (
    JujuBackupError,
    LockedError,
    NotFoundError,
    RefusedError,
    RemoteStepError,
    VerifyError,
)
from jujubackup.host.base import Host
from jujubackup.metadata import ID_TIME_FORMAT, BackupMetadata, format_time, is_backup_id, resolve_id
from jujubackup.profiles import BACKUP_DIR_MARKER, DEFAULT_BACKUP_DIR
from jujubackup.remote_codes import RC_EXISTS, RC_FOREIGN_DIR, RC_LOCKED, RC_MISMATCH
from jujubackup.ui import safe_text

PARTIAL_RE = re.compile(r"\.upload-([A-Za-z0-9][A-Za-z0-9.-]{0,120})\.tar\.gz\.part")
LOCK_FILE = ".jujubackup.lock"
LOCKED_PREFIX = "jujubackup-locked: "
STALE_PREFIX = "jujubackup-stale-lock: "
ARCHIVE_SUFFIX = ".tar.gz"
RECORD_SUFFIX = ".json"
MAX_SIZE = (1 << 63) - 1  # Juju's Size is an int64 (state/backups/storage.go storageMetaDoc.Size)
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CatalogRecord:
    """One stored backup: its record (<ID>.json) and whether its archive is present."""

    id: str
    archive: str
    path: str
    size: int
    sha256: str
    metadata: BackupMetadata
    manifest: dict[str, Any]
    raw: dict[str, Any]
    archive_present: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return the record as shown by `info --format json|yaml` (Juju keys + ours, no secrets)."""
        data = {k: v for k, v in self.raw.items() if k not in ("CACert", "CAPrivateKey")}
        data["path"] = self.path
        data["archive_present"] = self.archive_present
        return data

    def row(self) -> dict[str, Any]:
        """Return the one-line summary used by `list`."""
        return {
            "id": self.id,
            "started": format_time(self.metadata.started),
            "size": self.size,
            "mode": self.manifest.get("consistency", ""),
            "machine": self.metadata.machine,
            "version": self.metadata.version,
            "notes": self.metadata.notes,
        }


@dataclass(frozen=True)
class Listing:
    """The catalog as read: records (oldest first), archives without a record, the lock state."""

    backup_dir: str
    records: list[CatalogRecord]
    orphans: list[str] = field(default_factory=list)
    lock_holder: dict[str, Any] | None = None
    locked: bool = False
    broken: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    partials: list[Partial] = field(default_factory=list)


@dataclass(frozen=True)
class Partial:
    """A partial upload in the backup dir (`.upload-KEY.tar.gz.part`, upload's staging file): KEY is the
    backup ID (or `file-…` when the ID was not known before sending). `remove KEY` deletes it; the
    next upload of the same archive resumes or replaces it."""

    key: str
    file: str
    size: int
    mtime: int

    @classmethod
    def parse(cls, entry: Any) -> Partial | None:
        """Given one entry of catalog-list's "partials", return it, or None when it is not one."""
        if not isinstance(entry, dict):
            return None
        name, size, mtime = entry.get("file"), entry.get("size"), entry.get("mtime")
        match = PARTIAL_RE.fullmatch(name) if isinstance(name, str) else None
        if match is None or not isinstance(size, int) or not isinstance(mtime, int) or size < 0:
            return None
        return cls(match.group(1), match.group(0), size, mtime)


def default_holder(operation: str) -> str:
    """Return who takes the lock: `user@workstation jujubackup OPERATION`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} jujubackup {operation}"


def build_record(
    metadata: BackupMetadata,
    *,
    backup_id: str,
    filename: str,
    size: int | str,
    sha256: str,
    manifest: dict[str, Any],
) -> dict[str, Any]:
    """Given stored metadata (ID, Checksum, Size, Stored filled), return the <ID>.json record object."""
    record = metadata.to_juju_dict()
    record.update(
        {
            "sha256": sha256,
            "size": size,
            "archive": f"{backup_id}.tar.gz",
            "filename": filename,
            "manifest": manifest,
        }
    )
    return record


def archive_file_name(backup_id: str) -> str:
    """Given a backup ID, return the archive's file name `<ID>.tar.gz`. Raise VerifyError (exit 8)
    unless the ID is exactly Juju's `YYYYMMDD-hhmmss.<uuid>` with a real date and time (Juju:
    state/backups/storage.go newStorageID, UTC "20060102-150405" + "." + model UUID), so the name
    is always one safe path component the tool built: no `/`, `..`, whitespace or control chars."""
    if not is_backup_id(backup_id):
        raise VerifyError(f"backup ID {safe_text(repr(backup_id))} is not of the form YYYYMMDD-hhmmss.<uuid>")
    try:
        datetime.strptime(backup_id[:15], ID_TIME_FORMAT)
    except ValueError as err:
        raise VerifyError(f"backup ID {backup_id} does not start with a real date and time") from err
    return backup_id + ARCHIVE_SUFFIX


def parse_record(text: str, backup_dir: str, *, archive_size: int = -1) -> CatalogRecord:
    """Given <ID>.json text from a controller (hostile input), return a CatalogRecord of typed,
    validated values: the ID of Juju's form (archive_file_name), the archive name built from it (a
    record's `archive` field may only repeat that name), `size` and `Size` ints in 0..MAX_SIZE,
    `sha256` 64 lowercase hex digits, times RFC3339 within datetime's range, `manifest` an object.
    Raise VerifyError (exit 8) naming the first problem otherwise."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise VerifyError(f"catalog record is not JSON: {safe_text(str(err))}") from err
    if not isinstance(raw, dict) or not raw.get("ID"):
        raise VerifyError("catalog record has no ID")
    if not isinstance(raw["ID"], str):
        raise VerifyError("catalog record's ID is not a string")
    archive = archive_file_name(raw["ID"])
    try:
        meta = BackupMetadata.from_json_dict(raw)
    except (TypeError, ValueError, OverflowError, RecursionError) as err:
        raise VerifyError(f"catalog record has an unreadable field: {safe_text(str(err))}") from err
    if raw.get("archive") not in (None, archive):
        raise VerifyError(f"catalog record names archive {safe_text(repr(raw['archive']))}, not {archive}")
    manifest = raw.get("manifest", {})
    if not isinstance(manifest, dict):
        raise VerifyError("catalog record's manifest is not an object")
    size = _size(raw, "size") if "size" in raw else _size(raw, "Size")
    _size(raw, "Size")
    sha256 = raw.get("sha256")
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise VerifyError("catalog record's sha256 is not 64 lowercase hex digits")
    return CatalogRecord(
        id=meta.id,
        archive=archive,
        path=f"{backup_dir.rstrip('/')}/{archive}",
        size=size,
        sha256=sha256,
        metadata=meta,
        manifest=manifest,
        raw=raw,
        archive_present=archive_size >= 0,
    )


def _size(raw: Mapping[str, Any], key: str) -> int:
    """Return raw[key] (absent: 0) if it is an int in 0..MAX_SIZE. Raise VerifyError otherwise."""
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIZE:
        raise VerifyError(f"catalog record's {key} {safe_text(repr(value))[:40]} is not a size in bytes")
    return value


def _listed_record(entry: Any, backup_dir: str) -> CatalogRecord:
    """Given one `records` entry of catalog-list ({"file", "text", "archive_size"}), return its
    record. Raise VerifyError if the entry or record is invalid or the file is not `<ID>.json`."""
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
        raise VerifyError("catalog-list returned a malformed entry")
    archive_size = entry.get("archive_size", -1)
    if isinstance(archive_size, bool) or not isinstance(archive_size, int):
        raise VerifyError("catalog-list returned a malformed archive size")
    record = parse_record(entry["text"], backup_dir, archive_size=archive_size)
    if entry.get("file") != record.id + RECORD_SUFFIX:
        raise VerifyError(f"the record of {record.id} is stored under another file name")
    return record


def _resolve_valid(
    valid: Mapping[str, CatalogRecord], rejected: Mapping[str, str], ref: str, host: str
) -> str:
    """Given the valid records, the rejected ones (record file stem -> why) and a ref, return the
    valid ID it names. Raise VerifyError (exit 8) if it names a rejected record, NotFoundError (5)."""
    try:
        found = resolve_id(valid, ref)
    except NotFoundError:
        if ref == "latest":
            named = [max(ids)] if (ids := [s for s in rejected if is_backup_id(s)]) else []
        else:
            named = [stem for stem in rejected if ref and stem.startswith(ref)]
        if len(named) != 1:
            raise
        stem = named[0]
    else:
        newer = [s for s in rejected if ref == "latest" and is_backup_id(s) and s > found]
        if not newer:
            return found
        stem = max(newer)
    raise VerifyError(
        f"the record of backup {safe_text(stem)} on {host} is invalid and was not used: {rejected[stem]}",
        hint="its <ID>.json on the controller is damaged or forged; `jujubackup list` shows the "
        "valid backups (name one by its ID)",
    )


def lock_error(err: RemoteStepError, host: str = "") -> JujuBackupError:
    """Given a failed remote step, return the LockedError (exit 7) it stands for, the RefusedError
    (exit 6) of a backup dir that is not jujubackup's own (lib/lock's claim_backup_dir), or `err`."""
    if err.returncode == RC_FOREIGN_DIR:
        return foreign_dir_error(err, host)
    if err.returncode != RC_LOCKED:
        return err
    holder = _prefixed_json(err.stderr_tail, LOCKED_PREFIX)
    where = f" on {host}" if host else ""
    who = describe_holder(holder) if holder else "a process that left no holder record"
    return LockedError(
        f"the controller's backup dir{where} is locked: {who}",
        hint="wait for that operation to finish; the lock (flock) frees itself when its process exits",
    )


def foreign_dir_error(err: RemoteStepError, host: str = "") -> RefusedError:
    """Given the failed step of a script that refused the backup dir (exit 81), return its RefusedError
    (exit 6) with the host's reason."""
    reasons = [line[len("error: ") :] for line in err.stderr_tail.splitlines() if line.startswith("error: ")]
    where = f" on {host}" if host else ""
    reason = reasons[-1] if reasons else "the backup dir is not a dedicated jujubackup dir"
    return RefusedError(
        f"refused{where}: {reason}",
        hint=f"give --backup-dir a new or empty dir (jujubackup marks it with {BACKUP_DIR_MARKER}); "
        "nothing was changed",
    )


def describe_holder(holder: dict[str, Any]) -> str:
    """Given a lock holder record, return `OPERATION by HOLDER, pid N, since T`."""
    def shown(key: str) -> str:  # the holder record is the controller's text: shown inert
        return safe_text(str(holder.get(key, "?")))

    return f"{shown('operation')} by {shown('holder')}, pid {shown('pid')}, since {shown('started')}"


def stale_lock_warning(text: str) -> str | None:
    """Given a script's stderr line(s) or a holder record's text, return a stale-lock warning or None."""
    holder = _prefixed_json(text, STALE_PREFIX) if STALE_PREFIX in text else _json_or_none(text)
    if not holder:
        return None
    return (
        f"found a stale lock record ({describe_holder(holder)}): that run died without cleaning up; "
        "the lock itself (flock) was free"
    )


def _prefixed_json(text: str, prefix: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith(prefix):
            return _json_or_none(line[len(prefix) :])
    return None


def _json_or_none(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and value else None


class Catalog:
    """The catalog of one controller host (remote; every call runs one script over `host`)."""

    def __init__(self, host: Host, backup_dir: str = DEFAULT_BACKUP_DIR, holder: str | None = None) -> None:
        self.host = host
        self.backup_dir = backup_dir.rstrip("/") or "/"
        self.holder = holder or default_holder("catalog")

    def archive_path(self, backup_id: str) -> str:
        """Return the remote path of backup `backup_id`'s archive."""
        return f"{self.backup_dir}/{backup_id}.tar.gz"

    def staging_path(self, backup_id: str) -> str:
        """Return a remote path (in the backup dir, hidden) where an upload can be staged."""
        return f"{self.backup_dir}/.upload-{backup_id}.tar.gz.part"

    def listing(self) -> Listing:
        """Return the catalog as stored on the host (records oldest first)."""
        text = scripts.render("catalog-list", backup_dir=self.backup_dir)
        doc = self.host.run("catalog-list", text).json()
        records: list[CatalogRecord] = []
        broken: list[str] = []
        rejected: dict[str, str] = {}
        for entry in doc.get("records") or []:
            try:
                records.append(_listed_record(entry, self.backup_dir))
            except JujuBackupError as err:
                name = str(entry.get("file") if isinstance(entry, dict) else "?")
                broken.append(f"{safe_text(name)}: {err.message}")
                rejected[name.removesuffix(RECORD_SUFFIX)] = err.message
        records.sort(key=lambda r: r.id)
        return Listing(
            backup_dir=self.backup_dir,
            records=records,
            orphans=[str(o) for o in doc.get("orphans") or []],
            lock_holder=_json_or_none(str(doc.get("lock") or "")),
            locked=bool(doc.get("locked")),
            broken=broken,
            rejected=rejected,
            partials=[p for p in map(Partial.parse, doc.get("partials") or []) if p is not None],
        )

    def records(self) -> list[CatalogRecord]:
        """Return the stored backups, oldest first."""
        return self.listing().records

    def get(self, ref: str) -> CatalogRecord:
        """Given an ID, unique prefix or `latest`, return its record. Raise NotFoundError (exit 5)."""
        return self.resolve([ref])[0]

    def resolve(self, refs: Sequence[str]) -> list[CatalogRecord]:
        """Given IDs/prefixes/`latest`, return their records in order. Raise NotFoundError (exit 5),
        VerifyError (exit 8) when a ref names a record that failed validation (never used; `latest`
        too when the newest record is such a one: it does not silently mean an older backup)."""
        listing = self.listing()
        by_id = {r.id: r for r in listing.records}
        return [by_id[_resolve_valid(by_id, listing.rejected, ref, self.host.name)] for ref in refs]

    def remove(self, backup_ids: Sequence[str]) -> list[str]:
        """Given exact IDs, delete their records and archives under the lock; return the IDs removed.

        Raise LockedError (exit 7) when another operation holds the lock.
        """
        text = scripts.render(
            "catalog-remove", backup_dir=self.backup_dir, holder=self.holder, ids=list(backup_ids)
        )
        try:
            doc = self.host.run("catalog-remove", text).json()
        except RemoteStepError as err:
            raise lock_error(err, self.host.name) from err
        return [str(i) for i in doc.get("removed") or []]

    def register(
        self, staged_path: str, record: dict[str, Any], *, force: bool = False, staged_sha256: str = ""
    ) -> CatalogRecord:
        """Given an archive already on the host at `staged_path` and its record, move it into the
        catalog as <ID>.tar.gz and write <ID>.json (the commit point), under the lock.

        The staged file's size and SHA-256 must equal record["size"] / record["sha256"]; a
        `staged_sha256` the caller had the host compute while writing the file stands for the
        host re-hashing it (upload: no second read of the staged file).
        Raise RefusedError (exit 6) if the ID exists and not `force`, VerifyError (exit 8) on a
        size/SHA-256 mismatch, LockedError (exit 7) when locked.
        """
        backup_id = str(record["ID"])
        record = {**record, "archive": f"{backup_id}.tar.gz"}
        text = scripts.render(
            "catalog-register",
            backup_dir=self.backup_dir,
            holder=self.holder,
            backup_id=backup_id,
            staged=staged_path,
            sha256=str(record["sha256"]),
            staged_sha256=staged_sha256,
            size=int(record["size"]),
            force=force,
            record_json=json.dumps(record, separators=(",", ":")),
        )
        try:
            self.host.run("catalog-register", text)
        except RemoteStepError as err:
            if err.returncode == RC_EXISTS:
                raise RefusedError(
                    f"a backup with ID {backup_id} is already stored on {self.host.name}",
                    hint="use --force to replace it",
                ) from err
            if err.returncode == RC_MISMATCH:
                raise VerifyError(
                    f"the uploaded file on {self.host.name} does not match: "
                    f"{err.stderr_tail.strip().splitlines()[-1]}"
                ) from err
            raise lock_error(err, self.host.name) from err
        return parse_record(json.dumps(record), self.backup_dir, archive_size=int(record["size"]))
