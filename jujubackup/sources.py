"""Where a verb reads an archive from (issue 17): a local file (plain or age-encrypted) or a store's
copy (`--store NAME` + an ID), decrypted with `--identity FILE` when encrypted.

Two ways to read one:
  plaintext(source)   a stream of the archive's plaintext, read once (verify, info): decrypted as it
                      is read, nothing written anywhere
  materialized(...)   a local path holding the plaintext, for the verbs that read the archive
                      several times and hand it to other processes (restore --archive, drill
                      --archive): a plain local file is used as it is; an encrypted copy is decrypted
                      into anonymous memory (memfd_create: no file on any filesystem, gone when the
                      process ends) and reached as /proc/<pid>/fd/<n>; a plain store copy is fetched
                      into the work dir (0600), as `restore ID` fetches a controller's copy.
Each checks the plaintext's SHA-256 and size against the sidecar's (VerifyError, exit 8).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jujubackup import crypt
from jujubackup.errors import NotFoundError, UsageError, VerifyError, local_os_error
from jujubackup.local_archives import read_sidecar
from jujubackup.stores import Store, StoredBackup
from jujubackup.transfer import CHUNK


@dataclass(frozen=True)
class Source:
    """An archive to read: `path` (local), or `store` + `ref` (ID, unique prefix or `latest`)."""

    path: Path | None = None
    store: Store | None = None
    ref: str | None = None
    identity: Path | None = None


@dataclass(frozen=True)
class Opened:
    """What `plaintext` yields: the stream, what it must hash to (None: unknown), a label."""

    stream: Any
    sha256: str | None
    size: int | None
    label: str
    encrypted: bool
    stored: StoredBackup | None = None


def resolve(store: Store, ref: str) -> StoredBackup:
    """Given a store and an ID, unique prefix or `latest`, return its complete copy. Raise
    NotFoundError (5) for none or several, VerifyError (8) for a copy without a valid sidecar."""
    copies = store.list_backups()
    if ref == "latest":
        found = [b for b in copies if b.record is not None][-1:]
    else:
        found = [b for b in copies if b.id == ref] or [b for b in copies if b.id.startswith(ref)]
    if not found:
        raise NotFoundError(f"no backup {ref!r} in store {store.name} ({store.describe()})",
                            hint=f"`jujubackup list --store {store.name}` shows what it holds")
    if len(found) > 1:
        raise NotFoundError(f"{ref!r} names {len(found)} backups in store {store.name}",
                            hint="give more of the ID")
    if found[0].record is None:
        raise VerifyError(f"the copy of {found[0].id} in store {store.name} is incomplete or its sidecar "
                          f"is invalid: {'; '.join(found[0].problems)}")
    return found[0]


def _identities(source: Source, label: str) -> list[Any]:
    if source.identity is None:
        raise UsageError(f"{label} is age-encrypted: give --identity FILE (an age identity file or "
                         "the OpenSSH private key of one of its recipients)")
    return list(crypt.load_identities(source.identity))


@contextmanager
def plaintext(source: Source) -> Iterator[Opened]:
    """Yield the archive's plaintext as a stream (see the module docstring). Raise NotFoundError (5)
    for a missing file or copy, UsageError (2) for an encrypted one without --identity, DecryptError
    (8) when the identity does not open it (truncation and tampering surface while reading)."""
    if source.store is not None:
        stored = resolve(source.store, source.ref or "latest")
        label = f"{source.store.name}:{stored.name}"
        raw: Any = source.store.open(stored.id)
        try:
            stream = crypt.DecryptingReader(raw, _identities(source, label), label=label) \
                if stored.encrypted else raw
            yield Opened(stream, stored.sha256, stored.plain_size, label, stored.encrypted, stored)
        finally:
            raw.close()
        return
    path = source.path
    assert path is not None
    if not path.is_file():
        raise NotFoundError(f"file not found: {path}")
    record = read_sidecar(path) or {}
    sha = record.get("sha256") if isinstance(record.get("sha256"), str) else None
    size = record.get("size") if isinstance(record.get("size"), int) else None
    encrypted = crypt.is_age_file(path)
    try:
        fh = path.open("rb")
    except OSError as err:
        raise local_os_error(err, f"reading {path}") from err
    with fh:
        if encrypted:
            yield Opened(crypt.DecryptingReader(fh, _identities(source, str(path)), label=str(path)),
                         sha, size, str(path), True)
        else:
            yield Opened(fh, sha, size, str(path), False)


def check_digest(label: str, sha256: str, size: int, expected_sha256: str | None,
                 expected_size: int | None) -> None:
    """Raise VerifyError (8) when the plaintext read is not what the sidecar recorded."""
    if (expected_sha256 and sha256 != expected_sha256) or (expected_size not in (None, size)):
        raise VerifyError(f"{label}: the decrypted archive is {size} bytes sha256 {sha256}, the sidecar "
                          f"says {expected_size} bytes sha256 {expected_sha256}",
                          hint="the copy or its sidecar was changed; use another copy")


SHM = Path("/dev/shm")


@contextmanager
def private_work_dir() -> Iterator[Path | None]:
    """Yield a new 0700 dir on /dev/shm (tmpfs: memory, not a disk) removed afterwards, or None
    where there is no /dev/shm (then the system's temp dir is used as before)."""
    if not SHM.is_dir():
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="jujubackup-work-", dir=SHM) as made:
        os.chmod(made, 0o700)
        yield Path(made)


def _plain_name(source: Source, opened: Opened) -> str:
    """The archive's name for messages and plans: `<ID>.tar.gz` (the store's validated ID, or the
    local file's name without `.age`)."""
    if opened.stored is not None:
        return opened.stored.id + ".tar.gz"
    name = source.path.name if source.path is not None else "archive.tar.gz"
    name = name[: -len(".age")] if name.endswith(".age") else name
    return name if name and not name.startswith(".") else "archive.tar.gz"


@contextmanager
def materialized(source: Source, work: Path | None) -> Iterator[Path]:
    """Yield a local path holding the plaintext archive of `source` (module docstring), verified
    against the sidecar's SHA-256 and size; clean up afterwards (the memfd is closed, a fetched file
    removed). Errors as `plaintext`; VerifyError (8) on a digest mismatch (nothing is yielded)."""
    if source.store is None and source.path is not None and not crypt.is_age_file(source.path):
        yield source.path
        return
    with plaintext(source) as opened:
        holder = tempfile.TemporaryDirectory(prefix="jujubackup-archive-", dir=work)
        os.chmod(holder.name, 0o700)
        where = Path(holder.name) / _plain_name(source, opened)
        if opened.encrypted:
            # the plaintext lives in anonymous memory; the name in the private dir only links to it
            fd = os.memfd_create("jujubackup-archive", os.MFD_CLOEXEC)
            target: IO[bytes] = os.fdopen(fd, "w+b")
            where.symlink_to(f"/proc/{os.getpid()}/fd/{fd}")
        else:
            target = open(where, "xb")  # noqa: SIM115 (closed below, the file must outlive the with)
            os.fchmod(target.fileno(), 0o600)
        cleanup = holder.cleanup
        try:
            hasher = hashlib.sha256()
            size = 0
            while data := opened.stream.read(CHUNK):
                hasher.update(data)
                target.write(data)
                size += len(data)
            target.flush()
            check_digest(opened.label, hasher.hexdigest(), size, opened.sha256, opened.size)
            if not opened.encrypted:
                target.close()
            yield where
        finally:
            if not target.closed:
                target.close()
            cleanup()
