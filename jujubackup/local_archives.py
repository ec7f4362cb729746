"""Archives on this workstation: sidecar records and `list --local DIR`.

A downloaded archive `<ID>.tar.gz` gets a sidecar `<ID>.json` next to it (a directory of downloads
looks like the controller's backup dir): the catalog record (Juju metadata keys + sha256, size, …)
plus a "local" block saying when the file's SHA-256 was last checked and its size/mtime then, so a
listing can tell "verified" from "changed since" without re-reading every archive. Archives without a
sidecar (e.g. made by Juju and copied over) are listed from their own metadata.json.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# `archive.X`, not `from jujubackup.archive import X`: the verifier and reader load when first used
# (archive/__init__), not by every verb that writes a sidecar (download)
from jujubackup import archive, stamp
from jujubackup.errors import JujuBackupError, NotFoundError, UsageError, local_os_error
from jujubackup.metadata import BackupMetadata, format_time, is_backup_id, parse_metadata_json

ARCHIVE_SUFFIX = ".tar.gz"
ENCRYPTED_SUFFIX = ".age"  # an age-encrypted copy (download --encrypt-to, a local store)
STAMP = "stamp"  # the sidecar key of the HMAC stamp (stamp.py)
COLUMNS = ("id", "started", "size", "verified", "version", "machine", "notes", "file")


def sidecar_path(archive: Path) -> Path:
    """Given an archive path, return its sidecar: `X.tar.gz` and its encrypted copy `X.tar.gz.age` ->
    `X.json` (one record per backup: its "stored" block names the file it describes), anything else
    -> `NAME.json`."""
    name = archive.name
    name = name[: -len(ENCRYPTED_SUFFIX)] if name.endswith(ARCHIVE_SUFFIX + ENCRYPTED_SUFFIX) else name
    base = name[: -len(ARCHIVE_SUFFIX)] if name.endswith(ARCHIVE_SUFFIX) else name
    return archive.with_name(base + ".json")


def write_sidecar(
    archive: Path, record: dict[str, Any], sha256: str, *, full: bool = False,
    contents: dict[str, Any] | None = None,
) -> Path:
    """Write `archive`'s sidecar (0600, atomically): the record plus the local check; return its path.
    `full` says the check was a full verification (verify_archive passed), not only the SHA-256;
    `contents` (with `full`) records what that verification counted (see `contents_of`). A full
    check is stamped (stamp.py: an HMAC with the operator's key over the sidecar, the archive's
    size, mtime and inode included): only a genuine stamp lets a later run skip verifying."""
    stat = archive.stat()
    data = {k: v for k, v in record.items() if k not in ("path", "archive_present", "local", STAMP)}
    data["local"] = {
        "file": archive.name,
        "sha256": sha256,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "inode": stat.st_ino,
        "verified_at": format_time(datetime.now(timezone.utc)),
        "checks": "full" if full else "sha256",
        **(contents if full and contents else {}),
    }
    key = stamp.load_key(create=True) if full else None
    if key is not None:  # without a key the full check is recorded but never trusted as one
        data[STAMP] = stamp.sign(key, data)
    side = sidecar_path(archive)
    _write_private(side, json.dumps(data, indent=2) + "\n")
    return side


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (0600) atomically: into a new temp file of a random name next to it,
    created with O_EXCL (mkstemp: never through a planted link or an existing file), then renamed
    over `path` (a link at `path` itself is replaced, not followed). The temp file is removed on
    failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def prepare_directory(directory: Path, label: str = "") -> None:
    """Create `directory` (0700, with missing parents) unless it exists; `label` names it in errors
    ("--dir"). Raise UsageError (exit 2) if it exists and is not a directory, or the typed error of
    the OSError creating it. A directory made by someone else meanwhile is used (two controllers of
    one `run` may create the same store dir at once)."""
    name = f"{label} {directory}".lstrip()
    if directory.is_dir():
        return
    if directory.exists() or directory.is_symlink():
        raise UsageError(f"{name} is not a directory")
    try:
        directory.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise UsageError(f"{name} is not a directory") from None
    except OSError as err:
        raise local_os_error(err, f"cannot create {name}") from err


def read_sidecar(archive: Path) -> dict[str, Any] | None:
    """Return the archive's sidecar record, or None when absent, not a JSON object or malformed
    (see sidecar_problem: a sidecar is input too, it may have been written by anyone)."""
    record, _ = load_sidecar(archive)
    return record


def load_sidecar(archive: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Return (the archive's valid sidecar record or None, why an existing sidecar was not used or
    None). A missing sidecar is (None, None)."""
    side = sidecar_path(archive)
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError, RecursionError) as err:
        return None, f"{side.name} is unreadable: {err}"
    problem = sidecar_problem(data)
    return (None, f"{side.name} is ignored: {problem}") if problem else (data, None)


def sidecar_problem(data: Any) -> str | None:
    """Given a decoded sidecar, return why it cannot be used (not an object, metadata that does
    not parse, an ID not of Juju's form, a sha256 not hex, sizes or times not ints in range, a
    `local` block not an object), or None when it is well-formed."""
    if not isinstance(data, dict):
        return "not a JSON object"
    try:
        BackupMetadata.from_json_dict(data)
    except JujuBackupError as err:
        return err.message
    except (TypeError, ValueError, OverflowError, RecursionError) as err:
        return f"unreadable metadata: {err}"
    backup_id = data.get("ID")
    if backup_id not in (None, "") and not (isinstance(backup_id, str) and is_backup_id(backup_id)):
        return "its ID is not of the form YYYYMMDD-hhmmss.<uuid>"
    if data.get("sha256") not in (None, "") and not _is_sha256(data["sha256"]):
        return "its sha256 is not 64 hex digits"
    local = data.get("local", {})
    if not isinstance(local, dict):
        return "its local block is not an object"
    for where, key in ((data, "size"), (data, "Size"), (local, "size"), (local, "mtime_ns"), (local, "inode"),
                       (local, "unpacked_bytes")):
        value = where.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            return f"its {key} is not a non-negative integer"
    return None


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def contents_of(report: archive.VerifyReport) -> dict[str, Any]:
    """Given a passed verification, return what a restore needs of it without reading the archive
    again: the bytes all members unpack to and whether the dump has an oplog to replay (a non-empty
    dump/oplog.bson: load-db replays only such a one, as `mongodump --oplog` of an idle DB leaves an
    empty file)."""
    unpacked = sum(m.size for m in report.members) + sum(m.size for m in report.root_members)
    oplog = any(m.path == "dump/oplog.bson" and m.size > 0 for m in report.members)
    return {"unpacked_bytes": unpacked, "has_oplog": oplog}


def fully_verified(archive: Path) -> dict[str, Any] | None:
    """Return the sidecar record of an archive that passed a full verification and has not changed
    since, else None: the sidecar's stamp must be this operator's HMAC of it (stamp.py: a sidecar
    anyone else wrote or edited is not trusted), and the file's size, mtime and inode must still be
    those stamped (the record names its ID and SHA-256).

    What this vouches for is the SHA-256: a caller that skips verifying again must check that the
    bytes it uses have that digest (upload: the host's digest of what it received)."""
    record = read_sidecar(archive)
    if record is None or not record.get("ID") or not record.get("sha256"):
        return None
    key = stamp.load_key(create=False)
    unstamped = {k: v for k, v in record.items() if k != STAMP}
    if key is None or not stamp.is_genuine(key, unstamped, record.get(STAMP)):
        return None
    local = record.get("local") or {}
    try:
        info = archive.stat()
    except OSError:
        return None
    same_size = local.get("size") == info.st_size == record.get("size")
    unchanged = same_size and local.get("mtime_ns") == info.st_mtime_ns and local.get("inode") == info.st_ino
    if unchanged and local.get("checks") == "full" and local.get("sha256") == record["sha256"]:
        return unstamped
    return None


@dataclass(frozen=True)
class LocalArchive:
    """One archive file on this workstation, as `list --local` shows it."""

    path: Path
    id: str
    size: int
    sha256: str
    verified: str
    metadata: BackupMetadata | None
    record: dict[str, Any] | None

    def row(self) -> dict[str, Any]:
        """Return the listing row (keys: COLUMNS)."""
        md = self.metadata
        return {
            "id": self.id,
            "started": format_time(md.started) if md and md.started else "",
            "size": self.size,
            "verified": self.verified,
            "version": md.version if md else "",
            "machine": md.machine if md else "",
            "notes": md.notes if md else "",
            "file": str(self.path),
        }


def describe(
    path: Path, *, check: bool = False, warn: Callable[[str], None] = lambda _: None
) -> LocalArchive:
    """Given a local archive, return what is known about it (sidecar first, else its metadata.json).

    `verified` is "yes" (SHA-256 checked at download/verify and the file unchanged since), "changed"
    (size or mtime differ from the check), "unchecked" (no usable sidecar), or with `check` the
    outcome of a full verify ("yes" / "no: <first problem>"). A malformed sidecar is reported through
    `warn` and ignored. Raise NotFoundError if the file is missing.
    """
    if not path.is_file():
        raise NotFoundError(f"archive {path} not found")
    stat = path.stat()
    record, problem = load_sidecar(path)
    if problem:
        warn(f"{path.name}: {problem}")
    metadata: BackupMetadata | None = None
    sha256 = ""
    verified = "unchecked"
    encrypted = path.name.endswith(ENCRYPTED_SUFFIX)
    if record is not None:
        metadata = _metadata_or_none(record)
        sha256 = str(record.get("sha256", ""))
        local = record.get("local") or {}
        block = record.get("stored")
        stored: dict[str, Any] = block if isinstance(block, dict) else {}
        # an encrypted copy's local check is of the ciphertext: the "stored" block has its digest
        expected = stored.get("sha256") if encrypted else sha256
        unchanged = local.get("size") == stat.st_size and local.get("mtime_ns") == stat.st_mtime_ns
        mine = not encrypted or stored.get("file") == path.name
        verified = "yes" if mine and unchanged and local.get("sha256") == expected else "changed"
    elif not encrypted:
        metadata = _archive_metadata(path)
    if check and encrypted:
        verified = f"{verified} (encrypted: `verify FILE --identity KEY` checks its contents)"
    elif check:
        try:
            report = archive.verify_archive(path, expected_sha256=sha256 or None)
        except JujuBackupError as err:
            verified = f"no: {err.message}"
        else:
            verified = "yes" if report.ok else f"no: {report.failures[0].message}"
            if report.metadata is not None and metadata is None:
                metadata = report.metadata
    backup_id = (record or {}).get("ID") or (metadata.id if metadata else "") or ""
    return LocalArchive(path, str(backup_id), stat.st_size, sha256, verified, metadata, record)


def list_local(
    directory: Path, *, check: bool = False, warn: Callable[[str], None] = lambda _: None
) -> list[LocalArchive]:
    """Given a directory, return its `*.tar.gz` archives (oldest start first, then by name). One
    that cannot be read is reported through `warn` and skipped (one bad file never hides the rest;
    with `check` it is listed as failed).

    Raise NotFoundError if the directory does not exist.
    """
    if not directory.is_dir():
        raise NotFoundError(f"directory {directory} not found")
    found = []
    paths = [*directory.glob("*" + ARCHIVE_SUFFIX), *directory.glob("*" + ARCHIVE_SUFFIX + ENCRYPTED_SUFFIX)]
    for path in sorted(paths):
        try:
            if path.is_file():
                found.append(describe(path, check=check, warn=warn))
        except (JujuBackupError, OSError) as err:
            reason = getattr(err, "message", None) or str(err)
            warn(f"{path.name}: skipped: {reason}")
            if check:  # unreadable counts as failed, not as absent
                found.append(LocalArchive(path, "", 0, "", f"no: {reason}", None, None))
    return sorted(found, key=lambda a: (a.row()["started"] or "~", a.path.name))


def list_local_rows(directory: Path, *, check: bool = False) -> list[dict[str, Any]]:
    """Return `list --local DIR` rows (dicts with keys COLUMNS) for the archives in `directory`."""
    return [archive.row() for archive in list_local(directory, check=check)]


def _metadata_or_none(record: dict[str, Any]) -> BackupMetadata | None:
    try:
        return BackupMetadata.from_json_dict(record)
    except (JujuBackupError, TypeError, ValueError, OverflowError):
        return None


def _archive_metadata(path: Path) -> BackupMetadata | None:
    """Return metadata.json of an archive, or None when it cannot be read."""
    try:
        files = archive.read_members(path, ["metadata.json"]).files
        return parse_metadata_json(files["metadata.json"]) if "metadata.json" in files else None
    except (JujuBackupError, OSError, TypeError, ValueError, OverflowError, RecursionError):
        return None
