"""Copy a backup from a controller into stores: one stream off the controller, tee'd into every store
(encrypted per store to its recipients), each copy verified before it is published.

Used by `download --store NAME` / `download --encrypt-to` and by `run` (issue 17). The flow per copy
is the Store protocol's (stores/__init__.py): begin_put -> write the stream -> commit (verify, publish)
or abort (a plain partial is kept for a resume).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jujubackup import crypt
from jujubackup.catalog import CatalogRecord
from jujubackup.errors import JujuBackupError, local_os_error
from jujubackup.host.base import Connector, Host
from jujubackup.stores import NotStoredError, PutSession, Store, StoredBackup
from jujubackup.transfer import Throttle, remote_stat
from jujubackup.ui import UI


@dataclass
class CopyOutcome:
    """One store's result: the stored copy, or the error that stopped it (other stores went on)."""

    store: Store
    stored: StoredBackup | None = None
    error: JujuBackupError | None = None
    already_present: bool = False
    resumed_from: int = 0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"store": self.store.name, "where": self.store.describe()}
        if self.stored is not None:
            out.update(file=self.stored.name, size=self.stored.size, sha256=self.stored.sha256,
                       encrypted=self.stored.encrypted, **{"stored-sha256": self.stored.stored_sha256,
                                                           "already-present": self.already_present,
                                                           "resumed-from": self.resumed_from})
        if self.error is not None:
            out.update(error=self.error.message, **{"exit-code": self.error.exit_code})
        return out


class _Branch:
    """One store's side of the tee: plaintext in, (encrypted) stored bytes into the put session."""

    def __init__(self, outcome: CopyOutcome, session: PutSession, skip: int) -> None:
        self.outcome = outcome
        self.session = session
        self.skip = skip  # plaintext bytes this store already holds (a resumed plain put)
        recipients = [crypt.parse_recipient(r) for r in outcome.store.recipients]
        # a resumed encrypted S3 put hands back the key material its parts were written with
        material = getattr(session, "material", None)
        self.writer = crypt.EncryptingWriter(session, recipients, material=material) if recipients else None

    def write(self, data: bytes) -> None:
        if self.outcome.error is not None:
            return
        try:
            (self.writer or self.session).write(data)
        except JujuBackupError as err:
            self.fail(err)
        except OSError as err:
            self.fail(local_os_error(err, f"store {self.outcome.store.name}"))

    def fail(self, err: JujuBackupError) -> None:
        self.outcome.error = err
        self.session.abort(keep=True)


class _Tee:
    """The sink host.get writes into: hashes the plaintext once, feeds every live branch (and `also`,
    a sink that sees the plaintext too: run's archive verifier)."""

    def __init__(self, branches: Sequence[_Branch], throttle: Throttle, start: int, hasher: Any,
                 also: Any = None) -> None:
        self.branches = branches
        self.throttle = throttle
        self.hasher = hasher
        self.size = start
        self.also = also

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        if self.also is not None:
            self.also.write(data)
        for branch in self.branches:
            branch.write(data)
        if all(b.outcome.error is not None for b in self.branches):
            first = self.branches[0].outcome.error
            assert first is not None
            raise first  # every store failed: stop reading from the controller
        self.throttle(len(data))
        return len(data)


def copy_to_stores(host: Host, record: CatalogRecord, stores: Sequence[Store], ui: UI, *,
                   bwlimit: int | None = None, also: Any = None) -> list[CopyOutcome]:
    """Given a connected controller, a catalog record and stores, copy the archive into each store
    not holding it yet, in one read of the controller's file; return one CopyOutcome per store (in
    order). `also` (a sink with write(bytes)) sees every plaintext byte read, from the start byte
    (run feeds its verifier; give it only with no resumable partial, or expect a suffix). A store's
    failure is its outcome's error (its partial kept when plain); the others go on.
    A store already holding a complete copy with the record's SHA-256 is left as it is.
    Raise ConnectError (3) when the controller's stream breaks (every started put is aborted, plain
    partials kept)."""
    outcomes = [CopyOutcome(store) for store in stores]
    branches: list[_Branch] = []
    for outcome in outcomes:
        try:
            if _already_stored(outcome, record):
                continue
            store = outcome.store
            encrypted = bool(store.recipients)
            # `size` sizes an S3 put's parts (an encrypted copy is the archive + 16 bytes per 64 KiB)
            session = store.begin_put(record.id, encrypted=encrypted, size=record.size,
                                      plain_sha256=record.sha256)
            branches.append(_Branch(outcome, session, session.offset))
        except JujuBackupError as err:
            outcome.error = err
    if not branches:
        return outcomes
    start = _resume_offset(host, record, branches, ui)
    hasher = hashlib.sha256() if start == 0 else _prefix_hasher(branches)
    tee = _Tee(branches, Throttle(bwlimit), start, hasher, also)
    try:
        with ui.transfer(f"copy {record.id[:15]}", record.size, start) as advance:
            host.get(record.path, tee, offset=start, progress=advance,  # type: ignore[arg-type]
                     size=record.size - start)
    except BaseException:
        for branch in branches:
            if branch.outcome.error is None:
                branch.session.abort(keep=True)
        raise
    plain_sha256 = tee.hasher.hexdigest()
    for branch in branches:
        _finish(branch, record, plain_sha256, tee.size, ui)
    return outcomes


def _already_stored(outcome: CopyOutcome, record: CatalogRecord) -> bool:
    """True (and the outcome filled) when the store holds a complete copy of this very archive."""
    try:
        stored = outcome.store.get(record.id)
    except NotStoredError:
        return False
    if stored.record is not None and stored.sha256 == record.sha256:
        outcome.stored = stored
        outcome.already_present = True
        return True
    return False


def _resume_offset(host: Host, record: CatalogRecord, branches: list[_Branch], ui: UI) -> int:
    """Return the byte to start reading the controller's file at: a single plain put whose partial
    is the controller's prefix resumes there; any other partial starts again from 0."""
    if len(branches) == 1 and branches[0].skip and branches[0].writer is None:
        branch = branches[0]
        session: Any = branch.session
        if branch.skip <= record.size:
            remote = remote_stat(host, record.path, prefix=branch.skip)
            if remote.sha256 == session.prefix_sha256:
                ui.info(f"resuming the copy of {record.id} into {branch.outcome.store.name} at byte "
                        f"{branch.skip} of {record.size}")
                branch.outcome.resumed_from = branch.skip
                return branch.skip
        ui.warn(f"the partial copy in store {branch.outcome.store.name} is not this archive's; starting over")
    for branch in branches:
        if branch.skip:
            restart = getattr(branch.session, "restart", None)
            if restart is not None:
                restart()
            branch.skip = 0
    return 0


def _prefix_hasher(branches: list[_Branch]) -> Any:
    """The SHA-256 state over the resumed prefix (the one plain branch's own)."""
    return branches[0].session.hasher.copy()  # type: ignore[attr-defined]


def _finish(branch: _Branch, record: CatalogRecord, plain_sha256: str, plain_size: int, ui: UI) -> None:
    """Close the branch's encryption, commit its put; a failure becomes its outcome's error."""
    outcome = branch.outcome
    if outcome.error is not None:
        return
    try:
        if branch.writer is not None:
            branch.writer.close()
        outcome.stored = branch.session.commit(record.to_dict(), plain_sha256=plain_sha256,
                                               plain_size=plain_size, recipients=outcome.store.recipients)
        ui.info(f"copied {record.id} to store {outcome.store.name} ({outcome.stored.name}, "
                f"{outcome.stored.size} bytes{', age-encrypted' if outcome.stored.encrypted else ''})")
    except JujuBackupError as err:
        outcome.error = err
        branch.session.abort(keep=False)
    except OSError as err:
        outcome.error = local_os_error(err, f"store {outcome.store.name}")
        branch.session.abort(keep=True)


def run_copy(via: Connector, ui: UI, ref: str, stores: Sequence[Store], *, backup_dir: str,
             bwlimit: int | None = None) -> tuple[CatalogRecord, list[CopyOutcome]]:
    """Connect to the first controller of the connector holding `ref`, copy it into `stores`, close.
    Return (the record, the outcomes). Errors as copy_to_stores; NotFoundError (5) / VerifyError (8)
    for an unknown ID or an invalid record (nothing is written then)."""
    from jujubackup.catalog import Catalog
    from jujubackup.operations.catalogs import connect_catalog

    host = connect_catalog(via, ui, backup_dir, holding=[ref])
    try:
        record = Catalog(host, backup_dir).get(ref)
        return record, copy_to_stores(host, record, stores, ui, bwlimit=bwlimit)
    finally:
        host.close()
