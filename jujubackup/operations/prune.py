"""prune: remove the backups of a controller's catalog that the retention policy does not keep.

connect (the first controller that answers; each HA controller keeps its own catalog: name another
with -H) -> list the catalog -> apply the policy (retention.py) -> find the newest backup that
verifies (stored copies verified in place, newest first, until one passes; IDs the caller already
verified count without a second pass) and keep it whatever the policy says -> ask -> remove, through
Catalog.remove: the same catalog-remove script `remove` runs, under the controller's lock (exit 7
while create, upload, remove or a restore step holds it). A locked catalog is refused before
anything is verified.

Records that failed validation, archives without a record and partial uploads are never pruned:
only the catalog's valid records are candidates (`list` shows the rest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jujubackup.catalog import Catalog, CatalogRecord, Listing, default_holder, describe_holder
from jujubackup.errors import (
    EXIT_CONNECT,
    EXIT_LOCKED,
    DeclinedError,
    JujuBackupError,
    LockedError,
)
from jujubackup.host.base import Connector, Host
from jujubackup.metadata import format_time
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.operations.verify import VerifyRequest, verify_stored
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.retention import Candidate, Plan, Policy, apply_policy, id_time
from jujubackup.ui import UI

Confirm = Callable[[list[CatalogRecord]], bool]
COLUMNS = ("id", "started", "action", "verified", "reasons")


@dataclass(frozen=True)
class PruneRequest:
    """What to prune: the policy, whether to only show the plan, and IDs already known to verify."""

    policy: Policy
    dry_run: bool = False
    backup_dir: str = DEFAULT_BACKUP_DIR
    verified: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PruneResult:
    """The plan applied to one catalog and what was removed (nothing on a dry run)."""

    host: str
    plan: Plan
    removed: list[str]
    dry_run: bool
    verify_failures: dict[str, str] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Return one row per backup, newest first: id, started, action, verified, reasons."""
        rows = []
        for decision in self.plan.decisions:
            c = decision.candidate
            verified = {True: "yes", False: "FAILED", None: "-"}[c.verified]
            rows.append({
                "id": c.id,
                "started": format_time(c.time),
                "action": "keep" if decision.keep else ("would remove" if self.dry_run else "remove"),
                "verified": verified,
                "reasons": list(decision.reasons),
            })
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "policy": self.plan.policy.as_dict(),
            "dry-run": self.dry_run,
            "backups": self.rows(),
            "removed": self.removed,
            "verify-failures": self.verify_failures,
        }


def prune(host: Host, request: PruneRequest, ui: UI, confirm: Confirm) -> PruneResult:
    """Given a connected controller, apply `request.policy` to its catalog; remove what it does not
    keep unless `request.dry_run`. Return the result (the plan, the IDs removed).

    Raise UsageError (exit 2) for an empty policy, LockedError (exit 7) when another operation holds
    the controller's lock (before anything is verified or removed), RefusedError (exit 6) when
    `confirm` declines (nothing removed), ConnectError (exit 3) if the connection drops.
    """
    catalog = Catalog(host, request.backup_dir, holder=default_holder("prune"))
    listing = catalog.listing()
    refuse_locked(listing, host.name)
    for line in listing.broken:
        ui.warn(f"{line} (never pruned)")
    by_id = {r.id: r for r in listing.records}
    candidates = [Candidate(r.id, id_time(r.id)) for r in listing.records]
    plan = apply_policy(candidates, request.policy)
    failures: dict[str, str] = {}
    if plan.remove:  # nothing goes: no need to know which verifies
        candidates, failures = mark_newest_verified(host, listing, request, ui)
        plan = apply_policy(candidates, request.policy)
    result = PruneResult(host.name, plan, [], request.dry_run, failures)
    if request.dry_run or not plan.remove:
        return result
    records = [by_id[c.id] for c in plan.remove]
    if not confirm(records):
        raise DeclinedError("not confirmed: nothing removed", hint="give --yes to prune without asking")
    removed = catalog.remove([r.id for r in records])
    ui.info(f"pruned {len(removed)} backup(s) from {host.name}:{request.backup_dir}")
    return PruneResult(host.name, plan, removed, False, failures)


def refuse_locked(listing: Listing, host: str) -> None:
    """Raise LockedError (exit 7) naming the holder when the listing saw the controller's lock held."""
    if not listing.locked:
        return
    who = describe_holder(listing.lock_holder) if listing.lock_holder else "no holder record"
    raise LockedError(
        f"the controller's backup dir on {host} is locked: {who}",
        hint="wait for that operation to finish, then prune again; nothing was removed",
    )


def mark_newest_verified(
    host: Host, listing: Listing, request: PruneRequest, ui: UI
) -> tuple[list[Candidate], dict[str, str]]:
    """Given the catalog, return its candidates with `verified` set from the newest down to the first
    that verifies (an ID in `request.verified`, or a stored copy that verifies in place), and the
    reasons the newer ones failed (ID -> message). Older candidates stay unknown (None)."""
    failures: dict[str, str] = {}
    status: dict[str, bool] = {}
    for record in sorted(listing.records, key=lambda r: r.id, reverse=True):
        ok, why = _verifies(host, record, request, ui)
        status[record.id] = ok
        if ok:
            break
        failures[record.id] = why
        ui.warn(f"backup {record.id} on {host.name} did not verify: {why}")
    return [Candidate(r.id, id_time(r.id), status.get(r.id)) for r in listing.records], failures


def _verifies(host: Host, record: CatalogRecord, request: PruneRequest, ui: UI) -> tuple[bool, str]:
    """Return (True, "") when `record`'s stored copy verifies (or the caller verified it), else
    (False, why). A connection that drops is raised, not counted as a failed archive."""
    if record.id in request.verified:
        return True, ""
    if not record.archive_present:
        return False, "its archive is missing"
    ui.info(f"verifying {record.id} on {host.name} (the newest backup that verifies is always kept)")
    try:
        report = verify_stored(host, VerifyRequest(record.id, request.backup_dir), ui)
    except JujuBackupError as err:
        if err.exit_code in (EXIT_CONNECT, EXIT_LOCKED):  # connection or lock: not the archive's fault
            raise
        return False, err.message
    if report.ok:
        return True, ""
    return False, "; ".join(c.message for c in report.failures[:3])


def run_prune(via: Connector, ui: UI, request: PruneRequest, confirm: Confirm) -> PruneResult:
    """Connect to the first controller that answers, prune its catalog, close. Errors as `prune`."""
    host = connect_catalog(via, ui, request.backup_dir)
    try:
        ui.info(f"catalog of {host.name}:{request.backup_dir}: {request.policy.describe()}")
        return prune(host, request, ui, confirm)
    finally:
        host.close()
