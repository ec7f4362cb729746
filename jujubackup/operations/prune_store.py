"""prune --store NAME (and run's store-retention): apply a retention policy to the copies in a store.

A store holds the copies of several controllers: the policy applies to each controller's copies
apart (restic's grouping by host: the group is the controller model UUID that ends every backup ID),
so one controller's nightly copies never push another's out. Only complete copies (a valid sidecar)
are candidates; incomplete ones are listed and never pruned.

The newest copy of each group that verifies is always kept: copies are checked newest first until
one passes (only in a group where the policy would remove something): a plain copy, or an
encrypted one with `--identity`, is read and verified in full (archive.verify_stream over the
plaintext, against its sidecar's SHA-256 and size); an encrypted copy without an identity can only
be read back and hashed against the stored bytes its sidecar records ("intact", shown as such).
IDs the caller already verified (run: the copy it just made) count without a read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jujubackup.archive import verify_stream
from jujubackup.errors import EXIT_CONNECT, DeclinedError, JujuBackupError
from jujubackup.metadata import format_time
from jujubackup.operations.verified_copy import read_back
from jujubackup.retention import Candidate, Plan, Policy, apply_policy, id_time
from jujubackup.sources import Source, plaintext
from jujubackup.stores import Store, StoredBackup
from jujubackup.ui import UI

ConfirmCopies = Callable[[list[StoredBackup]], bool]
COLUMNS = ("id", "started", "action", "verified", "reasons")


@dataclass(frozen=True)
class StorePruneRequest:
    """The policy; `group`: only this controller model UUID's copies (run); `verified`: IDs known to
    verify; `identity`: decrypts encrypted copies for a full verification."""

    policy: Policy
    dry_run: bool = False
    identity: Path | None = None
    verified: frozenset[str] = frozenset()
    group: str | None = None


@dataclass
class StorePruneResult:
    """The plan per group (model UUID) and what was removed (nothing on a dry run)."""

    store: str
    policy: Policy
    dry_run: bool
    plans: dict[str, Plan] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per complete copy, newest first within each group."""
        rows = []
        for plan in self.plans.values():
            for decision in plan.decisions:
                c = decision.candidate
                rows.append({
                    "id": c.id,
                    "started": format_time(c.time),
                    "action": "keep" if decision.keep else ("would remove" if self.dry_run else "remove"),
                    "verified": self.checks.get(c.id, "-"),
                    "reasons": list(decision.reasons),
                })
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {"store": self.store, "policy": self.policy.as_dict(), "dry-run": self.dry_run,
                "backups": self.rows(), "removed": self.removed, "incomplete": self.incomplete}


def group_of(backup_id: str) -> str:
    """Return the controller model UUID a (validated) backup ID ends in."""
    return backup_id.split(".", 1)[1]


def prune_store(store: Store, request: StorePruneRequest, ui: UI, confirm: ConfirmCopies) -> StorePruneResult:
    """Given a store, apply the policy to each controller's complete copies in it; remove what it
    does not keep unless `request.dry_run`; return the result.

    Raise UsageError (exit 2) for an empty policy, RefusedError (exit 6) when `confirm` declines
    (nothing removed), the store's errors (ConnectError 3 for refused credentials, NotFoundError 5
    for a missing bucket or directory) when it cannot be listed or a removal fails.
    """
    result = StorePruneResult(store.name, request.policy, request.dry_run)
    groups: dict[str, list[StoredBackup]] = {}
    for copy in store.list_backups():
        if request.group is not None and group_of(copy.id) != request.group:
            continue
        if copy.record is None:
            result.incomplete.append(copy.id)
            ui.warn(f"store {store.name}: {copy.id} is incomplete ({'; '.join(copy.problems)}): never pruned")
            continue
        groups.setdefault(group_of(copy.id), []).append(copy)
    by_id: dict[str, StoredBackup] = {}
    for group, copies in sorted(groups.items()):
        by_id.update((c.id, c) for c in copies)
        plan = apply_policy([Candidate(c.id, id_time(c.id)) for c in copies], request.policy)
        if plan.remove:
            marked = _mark_newest_verified(store, copies, request, result, ui)
            plan = apply_policy(marked, request.policy)
        result.plans[group] = plan
    doomed = [by_id[c.id] for plan in result.plans.values() for c in plan.remove]
    if request.dry_run or not doomed:
        return result
    if not confirm(doomed):
        raise DeclinedError("not confirmed: nothing removed", hint="give --yes to prune without asking")
    for copy in doomed:
        store.remove(copy.id)
        result.removed.append(copy.id)
    ui.info(f"store {store.name}: pruned {len(result.removed)} copy(ies)")
    return result


def _mark_newest_verified(store: Store, copies: list[StoredBackup], request: StorePruneRequest,
                          result: StorePruneResult, ui: UI) -> list[Candidate]:
    """Return the group's candidates with `verified` set from the newest down to the first copy that
    verifies; note each check's outcome in `result.checks`."""
    status: dict[str, bool] = {}
    for copy in sorted(copies, key=lambda c: c.id, reverse=True):
        if copy.id in request.verified:
            status[copy.id], result.checks[copy.id] = True, "yes"
            break
        ok, how = _check(store, copy, request.identity, ui)
        status[copy.id], result.checks[copy.id] = ok, how
        if ok:
            break
        ui.warn(f"store {store.name}: {copy.id} did not verify: {how}")
    return [Candidate(c.id, id_time(c.id), status.get(c.id)) for c in copies]


def _check(store: Store, copy: StoredBackup, identity: Path | None, ui: UI) -> tuple[bool, str]:
    """Verify one copy (module docstring); return (passed, what the `verified` column shows)."""
    ui.info(f"store {store.name}: verifying {copy.id} (the newest copy that verifies is always kept)")
    try:
        if copy.encrypted and identity is None:
            read_back(store, copy.id, copy.stored_sha256, copy.size)
            return True, "intact (encrypted, not decrypted: no --identity)"
        with plaintext(Source(store=store, ref=copy.id, identity=identity)) as opened:
            report = verify_stream(opened.stream, label=opened.label, expected_sha256=opened.sha256,
                                   expected_size=opened.size)
    except JujuBackupError as err:
        if err.exit_code == EXIT_CONNECT:  # the store, not the copy
            raise
        return False, f"FAILED: {err.message}"
    if report.ok:
        return True, "yes"
    return False, "FAILED: " + "; ".join(c.message for c in report.failures[:3])
