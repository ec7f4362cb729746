"""Copy a backup into stores and verify the copies (run's copy and verify stages; issue 17).

On top of operations/copy.py (one stream off the controller tee'd into every store, each put
committed only when its bytes match the catalog's SHA-256), this adds what `run` promises:
- the archive is verified in full while it streams (archive.verify_stream in a thread fed through
  a pipe: what `verify FILE` checks: manifest, members, metadata, root.tar, dump BSON); copies of
  an archive that fails are removed again from the stores they were just put in (exit 8);
- each copy is read back from its store and hashed: the bytes must be the stored bytes its commit
  recorded (a store that lost or changed bytes is caught now, not at restore time).
A store already holding this backup is read back only (no stream: nothing to verify in passing).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from jujubackup.archive import VerifyReport, verify_stream
from jujubackup.catalog import CatalogRecord
from jujubackup.errors import EXIT_OK, JujuBackupError, VerifyError, local_os_error
from jujubackup.host.base import Host
from jujubackup.operations.copy import CopyOutcome, copy_to_stores
from jujubackup.stores import Store
from jujubackup.ui import UI

READ_BACK_CHUNK = 1 << 20


@dataclass
class VerifiedCopy:
    """One store's copy of this backup after copy and verify: ok, or why not."""

    store: str
    ok: bool = False
    size: int = 0
    seconds: float = 0.0
    location: str = ""
    encrypted: bool = False
    already_present: bool = False
    stream_verified: bool = False
    error: str = ""
    exit_code: int = EXIT_OK

    def fail(self, err: JujuBackupError) -> None:
        self.ok, self.error, self.exit_code = False, err.message, err.exit_code


class _VerifierFeed:
    """A sink for copy_to_stores' `also`: pipes what it gets into verify_stream in a thread."""

    def __init__(self, record: CatalogRecord, label: str) -> None:
        read_fd, write_fd = os.pipe()
        self.fed = 0
        self.reports: list[VerifyReport] = []
        self.pipe: IO[bytes] | None = os.fdopen(write_fd, "wb")

        def verify() -> None:
            with os.fdopen(read_fd, "rb") as source:
                self.reports.append(verify_stream(source, label=label, expected_sha256=record.sha256,
                                                  expected_size=record.size))

        self.thread = threading.Thread(target=verify, name="jujubackup-verify-copy", daemon=True)
        self.thread.start()

    def write(self, data: bytes) -> int:
        self.fed += len(data)
        if self.pipe is not None:
            try:
                self.pipe.write(data)
            except BrokenPipeError:  # the verifier stopped reading: its report says why
                self.pipe = None
        return len(data)

    def close(self) -> VerifyReport | None:
        """Stop feeding; return the verifier's report, or None when it was fed nothing."""
        if self.pipe is not None:
            with contextlib.suppress(BrokenPipeError):
                self.pipe.close()
            self.pipe = None
        self.thread.join()
        if self.fed == 0:
            return None
        if not self.reports:
            report = VerifyReport(label="copy")
            report.add("verifier", False, "the verifier did not finish")
            return report
        return self.reports[0]


def copy_and_verify(host: Host, record: CatalogRecord, stores: Sequence[Store], ui: UI) -> list[VerifiedCopy]:
    """Given a connected controller holding `record` and the stores to copy it to, copy, verify and
    read back (module docstring); return one VerifiedCopy per store, in order. Never raises for a
    store's or the stream's failure: each copy records its own error and exit code."""
    clock = time.monotonic()
    feed = _VerifierFeed(record, f"{host.name}:{record.path}")
    try:
        outcomes = copy_to_stores(host, record, stores, ui, also=feed)
    except JujuBackupError as err:  # the stream broke: no store has a complete copy
        feed.close()
        copies = [VerifiedCopy(s.name, location=s.describe()) for s in stores]
        for copy in copies:
            copy.fail(err)
        return copies
    report = feed.close()
    if any(o.resumed_from for o in outcomes):  # the verifier saw only the rest of the archive
        report = None
    copies = [_checked(o, record, report, ui) for o in outcomes]
    for copy in copies:
        copy.seconds = time.monotonic() - clock
    return copies


def _checked(
    outcome: CopyOutcome, record: CatalogRecord, report: VerifyReport | None, ui: UI
) -> VerifiedCopy:
    """Return one store's VerifiedCopy: its copy's error, the stream's verification, the read-back."""
    store = outcome.store
    stored = outcome.stored
    copy = VerifiedCopy(store.name, location=store.describe(), already_present=outcome.already_present)
    if outcome.error is not None or stored is None:
        copy.fail(outcome.error or VerifyError(f"store {store.name} reported no copy"))
        ui.warn(f"store {store.name}: {copy.error}")
        return copy
    copy.size, copy.encrypted = stored.size, stored.encrypted
    if report is not None and not outcome.already_present:
        if not report.ok:
            failed = "; ".join(c.message for c in report.failures[:3])
            _remove_quietly(store, record.id, ui)
            copy.fail(VerifyError(f"the archive did not verify while it was copied: {failed}; "
                                  f"its copy was removed from store {store.name}"))
            ui.warn(f"store {store.name}: {copy.error}")
            return copy
        copy.stream_verified = True
    try:
        read_back(store, stored.id, stored.stored_sha256 or stored.sha256, stored.size)
    except JujuBackupError as err:
        copy.fail(err)
        ui.warn(f"store {store.name}: {err.message}")
        return copy
    copy.ok = True
    ui.info(f"store {store.name}: {'already held it' if copy.already_present else 'copied'}, "
            f"{'verified and ' if copy.stream_verified else ''}read back ({store.describe()})")
    return copy


def _remove_quietly(store: Store, backup_id: str, ui: UI) -> None:
    try:
        store.remove(backup_id)
    except JujuBackupError as err:
        ui.warn(f"store {store.name}: could not remove the unverified copy: {err.message}")


def read_back(store: Store, backup_id: str, sha256: str, size: int) -> None:
    """Read `backup_id`'s stored bytes from `store`; return if they hash to `sha256` and are `size`
    bytes. Raise VerifyError (exit 8) otherwise, the store's error when it cannot be read."""
    hasher: Any = hashlib.sha256()
    got = 0
    try:
        with store.open(backup_id) as fh:
            while chunk := fh.read(READ_BACK_CHUNK):
                hasher.update(chunk)
                got += len(chunk)
    except OSError as err:
        raise local_os_error(err, f"reading back from store {store.name}") from err
    if (hasher.hexdigest(), got) != (sha256, size):
        raise VerifyError(
            f"the copy of {backup_id} read back from store {store.name} is not what was stored: "
            f"{got} bytes sha256 {hasher.hexdigest()}, expected {size} bytes sha256 {sha256}",
            hint="the store lost or changed bytes; check it, remove that copy and run again")
