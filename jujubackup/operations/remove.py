"""remove: delete stored backups (IDs, unique prefixes or `latest`), asking first unless --yes.

Each HA controller keeps its own catalog: with several controllers the refs resolve against all
their catalogs merged, and each backup is removed from every controller that holds it (its partial
uploads and invalid records too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from jujubackup.catalog import Catalog, CatalogRecord, default_holder
from jujubackup.connect import connect_one
from jujubackup.errors import DeclinedError
from jujubackup.host.base import Connector
from jujubackup.metadata import is_backup_id, resolve_id
from jujubackup.operations.catalogs import connect_catalog, merged_catalogs
from jujubackup.operations.list import MergedListing
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.ui import UI, safe_text

Confirm = Callable[[list[CatalogRecord], dict[str, str]], bool]
"""Asked with the valid records and the invalid ones (ID -> why its record failed validation)."""


@dataclass(frozen=True)
class Removal:
    """What remove's refs name: valid backups, partial uploads (never registered: removed without
    asking) and stored IDs whose record failed validation (ID -> why; removed once confirmed)."""

    records: list[CatalogRecord] = field(default_factory=list)
    partials: list[str] = field(default_factory=list)
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Every ID or partial key to hand to catalog-remove."""
        return [r.id for r in self.records] + list(self.invalid) + self.partials

    def held_by(self, merged: MergedListing, host: str) -> list[str]:
        """Return the IDs and partial keys of this removal that `host`'s catalog holds."""
        return ([r.id for r in self.records if host in merged.holders.get(r.id, [])]
                + [i for i in self.invalid if host in merged.rejected.get(i, {})]
                + [k for k in self.partials if host in merged.partials.get(k, [])])


def plan_removal(merged: MergedListing, refs: Sequence[str]) -> Removal:
    """Given the (merged) catalogs and remove's refs, return the Removal. A ref that is exactly a
    partial upload's key or a stored backup ID (the ID itself a valid one, YYYYMMDD-hhmmss.<uuid>)
    whose record failed validation, and no valid backup, names that; every other ref resolves
    against the valid records only (an invalid record is never used, not even for `latest`).

    Raise NotFoundError (exit 5) if a ref names nothing."""
    stored = {r.id: r for r in merged.records}
    partials = [ref for ref in refs if ref in merged.partials and ref not in stored]
    invalid = {ref: "; ".join(sorted(set(merged.rejected[ref].values())))
               for ref in refs if ref in merged.rejected and ref not in stored and is_backup_id(ref)}
    rest = [ref for ref in refs if ref not in partials and ref not in invalid]
    ids = dict.fromkeys(resolve_id(stored, ref) for ref in rest)  # NotFoundError
    return Removal([stored[i] for i in ids], list(dict.fromkeys(partials)), invalid)


def remove(
    connector: Connector,
    ui: UI,
    refs: Sequence[str],
    confirm: Confirm,
    backup_dir: str = DEFAULT_BACKUP_DIR,
) -> list[str]:
    """Resolve every ref, ask `confirm(records, invalid)`, then delete them (and each one's partial
    upload); return the IDs removed. A ref naming only a partial upload removes it without asking.

    Raise NotFoundError (exit 5) if a ref names nothing (nothing is removed then), LockedError
    (exit 7) when another operation holds the lock, RefusedError (exit 6) if not confirmed.
    """
    if len(connector.targets()) > 1:
        return remove_across(connector, ui, refs, confirm, backup_dir)
    host = connect_catalog(connector, ui, backup_dir)  # one host: the refs resolve below
    try:
        ui.info(f"catalog of {host.name}:{backup_dir}")
        catalog = Catalog(host, backup_dir, holder=default_holder("remove"))
        merged = MergedListing(backup_dir)
        merged.add(host.name, catalog.listing())
        removal = plan_removal(merged, refs)
        _confirm(removal, confirm, ui)
        return catalog.remove(removal.ids)
    finally:
        host.close()


def _confirm(removal: Removal, confirm: Confirm, ui: UI) -> None:
    """Ask for the backups and invalid records of `removal` (partial uploads need no question).
    Raise RefusedError (exit 6) if not confirmed."""
    if (removal.records or removal.invalid) and not confirm(removal.records, removal.invalid):
        raise DeclinedError("not confirmed: nothing removed", hint="give --yes to remove without asking")
    for backup_id, why in removal.invalid.items():
        ui.info(f"removing {backup_id}, whose record is invalid ({safe_text(why)})")
    for key in removal.partials:
        ui.info(f"removing the partial upload {key} (never registered)")


def remove_across(
    connector: Connector, ui: UI, refs: Sequence[str], confirm: Confirm, backup_dir: str
) -> list[str]:
    """remove with several controllers: resolve `refs` in the merged catalogs of those that answer,
    ask, then remove each backup (partial upload, invalid record) from every controller holding
    it; return the IDs removed.

    Raise NotFoundError (exit 5) for a ref naming nothing (nothing removed), RefusedError (exit 6)
    if not confirmed, the first controller's error (e.g. LockedError, exit 7) if a removal fails
    (removals from the controllers before it stay done)."""
    merged = merged_catalogs(connector, ui, backup_dir)
    removal = plan_removal(merged, refs)
    _confirm(removal, confirm, ui)
    removed: list[str] = []
    for target in connector.targets():
        held = removal.held_by(merged, target.name)
        if not held:
            continue
        host = connect_one(connector, target)
        try:
            done = Catalog(host, backup_dir, holder=default_holder("remove")).remove(held)
            ui.info(f"removed from {host.name}: {', '.join(done)}")
            removed.extend(i for i in done if i not in removed)
        finally:
            host.close()
    return [i for i in removal.ids if i in removed]
