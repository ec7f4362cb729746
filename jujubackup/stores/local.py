"""The local directory store: `download --dir`'s semantics behind the Store interface.

Layout of the directory (0700, created when missing; files 0600):
    <ID>.tar.gz | <ID>.tar.gz.age     the copy (plain, or encrypted with age)
    <ID>.json                         the sidecar (local_archives.write_sidecar: the catalog record, the
                                      "local" check block, the HMAC stamp when fully verified) + "stored"
    <name>.part                       a put in progress: renamed into place only after it verified

Writes never follow a link (transfer.open_private: O_NOFOLLOW, regular files only); the sidecar goes
through a private temp file and a rename; names come from the validated ID only (stores.object_name).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, BinaryIO

from jujubackup.errors import (
    LockedError,
    NotFoundError,
    RefusedError,
    VerifyError,
    local_os_error,
)
from jujubackup.local_archives import prepare_directory, sidecar_problem, write_sidecar
from jujubackup.stores import (
    STORED_KEY,
    NotStoredError,
    PutResult,
    StoredBackup,
    check_id,
    checked_block,
    id_of_name,
    object_name,
    parse_time,
    sidecar_name,
    stored_problem,
)
from jujubackup.stores.config import LocalStoreConfig
from jujubackup.transfer import CHUNK, hash_prefix, open_private, start_writeback

PART_SUFFIX = ".part"
WRITEBACK_EVERY = 32 << 20


class LocalPut:
    """A PutSession writing `<dest>.part`, renamed to `dest` by commit (see stores.PutSession)."""

    def __init__(self, store: LocalStore, backup_id: str, dest: Path, *, encrypted: bool) -> None:
        self.store = store
        self.backup_id = backup_id
        self.dest = dest
        self.part = dest.with_name(dest.name + PART_SUFFIX)
        self.encrypted = encrypted
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.prefix_sha256 = ""
        self.written = 0
        self.pending = 0
        self._fh: IO[bytes] | None = None
        self._open()

    def _open(self) -> None:
        """Open and lock the partial (another put of the same copy holding it: LockedError, exit 7),
        then keep it (resume) for a plain copy or empty it for an encrypted one."""
        try:
            fh = open_private(self.part, append=True)  # never truncated before the lock is held
        except OSError as err:
            raise local_os_error(err, f"writing {self.part}") from err
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            fh.close()
            raise LockedError(f"another copy of {self.backup_id} into store {self.store.name} is under way "
                              f"({self.part} is locked)", hint="wait for it to finish") from err
        self._fh = fh
        held = os.fstat(fh.fileno()).st_size
        if held and not self.encrypted:
            self.hasher = hash_prefix(self.part, held)
            self.offset = held
            self.prefix_sha256 = self.hasher.hexdigest()
        elif held:
            os.ftruncate(fh.fileno(), 0)
        self.written = self.offset

    def restart(self) -> None:
        """Drop the kept partial (its bytes are not the source's prefix) and start from byte 0."""
        assert self._fh is not None, "restart after commit/abort"
        os.ftruncate(self._fh.fileno(), 0)  # the lock stays held
        self.hasher = hashlib.sha256()
        self.offset = 0
        self.prefix_sha256 = ""
        self.written = 0

    def write(self, data: bytes) -> int:
        assert self._fh is not None, "write after commit/abort"
        try:
            self._fh.write(data)
        except OSError as err:
            failed = local_os_error(err, f"writing {self.part}")
            if not self.encrypted:
                failed.hint = f"{failed.hint}; the partial file is kept: the same copy resumes"
            raise failed from err
        self.hasher.update(data)
        self.written += len(data)
        self.pending += len(data)
        if self.pending >= WRITEBACK_EVERY:  # so the final fsync of a big copy has little left
            self._fh.flush()
            start_writeback(self._fh.fileno(), self.written - self.pending, self.pending)
            self.pending = 0
        return len(data)

    def commit(self, record: dict[str, Any], *, plain_sha256: str, plain_size: int,
               recipients: tuple[str, ...] = ()) -> StoredBackup:
        assert self._fh is not None, "commit after commit/abort"
        try:  # the partial's lock is held until it is renamed or removed
            self._fh.flush()
            os.fsync(self._fh.fileno())
            placed = self._verify_and_place(record, plain_sha256, plain_size, recipients)
        except OSError as err:
            raise local_os_error(err, f"writing {self.part}") from err
        finally:  # never unlink here: once renamed, `part` may be another put's new partial
            self._fh.close()
            self._fh = None
        return placed

    def _verify_and_place(self, record: dict[str, Any], plain_sha256: str, plain_size: int,
                          recipients: tuple[str, ...]) -> StoredBackup:
        """Check the partial against the record (else remove it, raise VerifyError), rename it into
        place and write the sidecar; return the stored copy."""
        stored_sha256 = self.hasher.hexdigest()
        put = PutResult(self.backup_id, self.encrypted, self.written, stored_sha256, plain_sha256,
                        plain_size, recipients)
        try:
            block = checked_block(
                put, record, name=self.dest.name, where=f"in store {self.store.name}",
                hint="the stored copy on the controller or the transfer is damaged; run `jujubackup "
                f"verify {self.backup_id}` on the controller, then copy again")
        except VerifyError:
            self.part.unlink(missing_ok=True)
            raise
        try:
            self.part.chmod(0o600)
            self.part.replace(self.dest)
            write_sidecar(self.dest, {**record, STORED_KEY: block}, stored_sha256)
        except OSError as err:
            raise local_os_error(err, f"placing {self.dest}") from err
        return self.store.get(self.backup_id)

    def abort(self, *, keep: bool = True) -> None:
        if (self.encrypted or not keep) and self._fh is not None:
            self.part.unlink(missing_ok=True)  # still locked: nobody else is writing it
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class LocalStore:
    """A Store in a local directory (see the module docstring)."""

    kind = "local"

    def __init__(self, name: str, config: LocalStoreConfig) -> None:
        self.name = name
        self.config = config
        self.directory = config.path
        self.recipients = tuple(config.encrypt_to)

    def describe(self) -> str:
        return str(self.directory)

    def begin_put(self, backup_id: str, *, encrypted: bool, size: int | None = None,
                  plain_sha256: str | None = None) -> LocalPut:
        prepare_directory(self.directory)
        dest = self.directory / object_name(backup_id, encrypted=encrypted)
        for other in (True, False):
            there = self.directory / object_name(backup_id, encrypted=other)
            if there.exists() or there.is_symlink():
                raise RefusedError(f"{there} already exists",
                                   hint="the store holds this backup already; remove it to copy it again")
        return LocalPut(self, backup_id, dest, encrypted=encrypted)

    def get(self, backup_id: str) -> StoredBackup:
        check_id(backup_id)
        for encrypted in (True, False):
            path = self.directory / object_name(backup_id, encrypted=encrypted)
            if path.is_file() and not path.is_symlink():
                return self._describe(path, backup_id, encrypted)
        raise NotStoredError(f"backup {backup_id} is not in store {self.name} ({self.directory})")

    def _describe(self, path: Path, backup_id: str, encrypted: bool) -> StoredBackup:
        """Return the StoredBackup of an archive file, its sidecar validated (record None if not)."""
        info = path.stat()
        mtime = datetime.fromtimestamp(info.st_mtime, timezone.utc)
        side = self.directory / sidecar_name(backup_id)
        try:
            record = json.loads(side.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return StoredBackup(self.name, backup_id, path.name, info.st_size, mtime, encrypted,
                                problems=("no sidecar",))
        except (OSError, ValueError, RecursionError) as err:
            return StoredBackup(self.name, backup_id, path.name, info.st_size, mtime, encrypted,
                                problems=(f"sidecar unreadable: {err}",))
        problem = sidecar_problem(record) or _stored_problem(record, backup_id, path.name, encrypted)
        if problem:
            return StoredBackup(self.name, backup_id, path.name, info.st_size, mtime, encrypted,
                                problems=(problem,))
        block = record.get(STORED_KEY) or {}
        return StoredBackup(
            self.name, backup_id, path.name, info.st_size, parse_time(block.get("stored_at")) or mtime,
            encrypted, sha256=record["sha256"], plain_size=int(record.get("size", 0)),
            stored_sha256=block.get("sha256", record["sha256"]),
            recipients=tuple(block.get("recipients", ())), record=record,
        )

    def list_backups(self) -> list[StoredBackup]:
        if not self.directory.is_dir():
            raise NotFoundError(f"store {self.name}: directory {self.directory} not found")
        found = []
        for path in sorted(self.directory.iterdir()):
            parsed = id_of_name(path.name)
            if parsed is None or path.is_symlink() or not path.is_file():
                continue
            found.append(self._describe(path, parsed[0], parsed[1]))
        return found

    def open(self, backup_id: str) -> BinaryIO:
        stored = self.get(backup_id)
        path = self.directory / stored.name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as err:
            raise local_os_error(err, f"reading {path}") from err
        return os.fdopen(fd, "rb", buffering=CHUNK)

    def remove(self, backup_id: str) -> None:
        check_id(backup_id)
        archives = [object_name(backup_id, encrypted=e) for e in (True, False)]
        names = [sidecar_name(backup_id), *archives, *(name + PART_SUFFIX for name in archives)]
        removed = 0
        for name in names:
            try:
                (self.directory / name).unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as err:
                raise local_os_error(err, f"removing {self.directory / name}") from err
        if not removed:
            raise NotStoredError(f"backup {backup_id} is not in store {self.name} ({self.directory})")


def _stored_problem(record: dict[str, Any], backup_id: str, name: str, encrypted: bool) -> str | None:
    """A sidecar with a "stored" block is checked as such; one written by `download` before stores
    existed (plain copies only) must name this ID and file in its "local" block."""
    if STORED_KEY in record or encrypted:
        return stored_problem(record, backup_id, name)
    local = record.get("local") or {}
    if record.get("ID") != backup_id or local.get("file") != name or not record.get("sha256"):
        return "sidecar does not describe this file"
    return None
