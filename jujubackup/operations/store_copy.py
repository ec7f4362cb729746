"""Copy one stored backup off its controller into several stores at once, verified (run; issue 17).

One stream leaves the controller (host.get, the OpenSSH client when it can) and is tee'd:
- into every store's put session (stores.PutSession), through an age EncryptingWriter for a store
  with recipients (the plaintext never touches a disk for an encrypted copy); a plain put that
  resumes from an earlier, interrupted one skips the bytes it already holds;
- into the archive verifier (archive.verify_stream in a thread, through a pipe: the checks of
  `verify FILE`, against the catalog's size and SHA-256).
Then each session commits (the store checks the SHA-256/size of what it got against the record)
only if the verifier passed; else every session is aborted (nothing published). Last, each
committed copy is read back from the store and its bytes hashed: they must be the stored bytes the
commit recorded (a store that lost or changed bytes is caught now, not at restore time).

One store failing (no space, refused credentials, a bad partial) does not stop the copies to the
others; a failure of the stream itself (the connection) fails them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from jujubackup import crypt
from jujubackup.archive import VerifyReport, verify_stream
from jujubackup.catalog import CatalogRecord
from jujubackup.errors import JujuBackupError, NotFoundError, VerifyError, local_os_error
from jujubackup.host.base import Host
from jujubackup.stores import PutSession, Store, StoredBackup
from jujubackup.ui import UI

READ_BACK_CHUNK = 1 << 20


@dataclass
class CopyOutcome:
    """One store's copy: what it now holds (ok) or why not."""

    store: Store
    ok: bool = False
    stored: StoredBackup | None = None
    error: JujuBackupError | None = None
    seconds: float = 0.0
    already: bool = False


@dataclass
class _Target:
    """One store being written: its session, the writer in front of it, what it skips."""

    outcome: CopyOutcome
    session: PutSession
    writer: Any
    skip: int
    failed: bool = False


@dataclass
class _Tee:
    """The sink host.get writes the archive into: hashes it and hands it to every target and the
    verifier's pipe. A target that fails is aborted and dropped; the stream goes on."""

    targets: list[_Target]
    pipe: Any
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0

    def write(self, data: bytes) -> int:
        start = self.size
        self.hasher.update(data)
        self.size += len(data)
        if self.pipe is not None:
            try:
                self.pipe.write(data)
            except BrokenPipeError:  # the verifier stopped reading: its report says why
                self.pipe = None
        for target in self.targets:
            if target.failed:
                continue
            part = data[max(0, target.skip - start):] if target.skip > start else data
            if not part:
                continue
            try:
                target.writer.write(part)
            except JujuBackupError as err:
                _fail(target, err)
            except OSError as err:
                _fail(target, local_os_error(err, f"store {target.outcome.store.name}"))
        return len(data)


def _fail(target: _Target, err: JujuBackupError) -> None:
    target.failed = True
    target.outcome.error = err
    with contextlib.suppress(JujuBackupError):
        target.session.abort(keep=not target.outcome.store.recipients)


def copy_to_stores(host: Host, record: CatalogRecord, stores: Sequence[Store], ui: UI) -> list[CopyOutcome]:
    """Given a connected controller holding `record` and the stores to copy it to, copy it into
    each (one stream, verified, read back: module docstring); return one outcome per store, in
    order. Never raises for one store's failure; the stream's own failure (ConnectError) is
    recorded in every outcome that had no result yet."""
    clock = time.monotonic()
    outcomes = [CopyOutcome(store) for store in stores]
    targets = [t for t in (_start(o, record, ui) for o in outcomes) if t is not None]
    if targets:
        report = _stream(host, record, targets, ui)
        for target in targets:
            _finish(target, record, report)
    for outcome in outcomes:
        if outcome.ok and outcome.stored is not None:
            _read_back(outcome, ui)
        outcome.seconds = time.monotonic() - clock
        if outcome.ok:
            how = "already held it" if outcome.already else "copied"
            ui.info(f"store {outcome.store.name}: {how}, verified ({outcome.store.describe()})")
        elif outcome.error is not None:
            ui.warn(f"store {outcome.store.name}: {outcome.error.message}")
    return outcomes


def _start(outcome: CopyOutcome, record: CatalogRecord, ui: UI) -> _Target | None:
    """Begin the put into one store; return its target, or None when the store already holds this
    backup complete (then the outcome is ok) or cannot start (the error is in the outcome)."""
    store = outcome.store
    try:
        try:
            held = store.get(record.id)
        except NotFoundError:
            held = None
        if held is not None and held.record is not None and held.sha256 == record.sha256:
            outcome.ok, outcome.stored, outcome.already = True, held, True
            return None
        encrypted = bool(store.recipients)
        session = store.begin_put(record.id, encrypted=encrypted, size=None if encrypted else record.size)
        writer: Any = session
        if encrypted:
            # cast: crypt.Recipient declares a settable `text`, the recipients are frozen dataclasses
            recipients = cast("list[crypt.Recipient]", [crypt.parse_recipient(r) for r in store.recipients])
            writer = crypt.EncryptingWriter(session, recipients)
        elif session.offset:
            ui.info(f"store {store.name}: resuming at byte {session.offset} of {record.size}")
        return _Target(outcome, session, writer, 0 if encrypted else session.offset)
    except JujuBackupError as err:
        outcome.error = err
    except OSError as err:
        outcome.error = local_os_error(err, f"store {store.name}")
    return None


def _stream(host: Host, record: CatalogRecord, targets: list[_Target], ui: UI) -> VerifyReport:
    """Stream the archive from the controller into the targets and the verifier; return the
    verifier's report (a stream failure is recorded in every target still running)."""
    read_fd, write_fd = os.pipe()
    reports: list[VerifyReport] = []

    def verify() -> None:
        with os.fdopen(read_fd, "rb") as source:
            reports.append(verify_stream(source, label=f"{host.name}:{record.path}",
                                         expected_sha256=record.sha256, expected_size=record.size))

    thread = threading.Thread(target=verify, name="jujubackup-copy-verify", daemon=True)
    thread.start()
    pipe = os.fdopen(write_fd, "wb")
    tee = _Tee(targets, pipe)
    try:
        with ui.transfer(f"copy {record.id[:15]}", record.size) as advance:
            host.get(record.path, tee, offset=0, progress=advance, size=record.size)  # type: ignore[arg-type]
    except JujuBackupError as err:
        for target in targets:
            if not target.failed:
                _fail(target, err)
    finally:
        with contextlib.suppress(BrokenPipeError):
            pipe.close()
        thread.join()
    if not reports:  # the verifier thread died: never commit unverified bytes
        report = VerifyReport(label=record.path)
        report.add("verifier", False, "the verifier did not finish")
        return report
    return reports[0]


def _finish(target: _Target, record: CatalogRecord, report: VerifyReport) -> None:
    """Commit one target's copy if it and the archive verified; else abort it (nothing published)."""
    if target.failed:
        return
    store = target.outcome.store
    try:
        if isinstance(target.writer, crypt.EncryptingWriter):
            target.writer.close()
        report.raise_for_failures()
        target.outcome.stored = target.session.commit(
            record.to_dict(), plain_sha256=report.digest.sha256 if report.digest else "",
            plain_size=report.digest.size if report.digest else 0, recipients=store.recipients)
        target.outcome.ok = True
    except JujuBackupError as err:
        _fail(target, err)


def _read_back(outcome: CopyOutcome, ui: UI) -> None:
    """Read the committed copy back from its store; its bytes must hash to what the commit stored.
    Record a VerifyError (exit 8) in the outcome otherwise (the copy is left for inspection)."""
    stored = outcome.stored
    assert stored is not None
    hasher = hashlib.sha256()
    size = 0
    try:
        with outcome.store.open(stored.id) as fh:
            while chunk := fh.read(READ_BACK_CHUNK):
                hasher.update(chunk)
                size += len(chunk)
    except JujuBackupError as err:
        outcome.ok, outcome.error = False, err
        return
    except OSError as err:
        outcome.ok = False
        outcome.error = local_os_error(err, f"reading back from store {outcome.store.name}")
        return
    want = stored.stored_sha256 or stored.sha256
    if (hasher.hexdigest(), size) != (want, stored.size):
        outcome.ok = False
        outcome.error = VerifyError(
            f"the copy of {stored.id} read back from store {outcome.store.name} is not what was stored: "
            f"{size} bytes sha256 {hasher.hexdigest()}, expected {stored.size} bytes sha256 {want}",
            hint="the store lost or changed bytes; check it, remove that copy and run again")
        return
    ui.debug(f"store {outcome.store.name}: read back {size} bytes, sha256 matches")
