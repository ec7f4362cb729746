"""remove: delete stored backups (IDs, unique prefixes or `latest`), asking first unless --yes.

Each HA controller keeps its own catalog: with several controllers the refs resolve against all
their catalogs merged, and each backup is removed from every controller that holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jujubackup.catalog import Catalog, CatalogRecord, Listing, default_holder
from jujubackup.connect import connect_one, resolve_targets
from jujubackup.errors import RefusedError
from jujubackup.metadata import resolve_id
from jujubackup.operations.status import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI

Confirm = Callable[[list[CatalogRecord]], bool]


def remove(
    settings: ConnectionSettings,
    ui: UI,
    refs: Sequence[str],
    confirm: Confirm,
    backup_dir: str = DEFAULT_BACKUP_DIR,
) -> list[str]:
    """Resolve every ref, ask `confirm(records)`, then delete them (and each one's partial upload);
    return the IDs removed. A ref naming only a partial upload removes it without asking.

    Raise NotFoundError (exit 5) if a ref names nothing (nothing is removed then), LockedError
    (exit 7) when another operation holds the lock, RefusedError (exit 6) if not confirmed.
    """
    if len(resolve_targets(settings)) > 1:
        return remove_across(settings, ui, refs, confirm, backup_dir)
    host = connect_catalog(settings, ui, backup_dir)  # one host: the refs resolve below
    try:
        ui.info(f"catalog of {host.name}:{backup_dir}")
        catalog = Catalog(host, backup_dir, holder=default_holder("remove"))
        listing = catalog.listing()
        partial = partial_refs(listing, refs)
        by_id = {r.id: r for r in listing.records}
        ids = dict.fromkeys(resolve_id(by_id, ref) for ref in refs if ref not in partial)  # NotFoundError
        records = [by_id[i] for i in ids]
        if records and not confirm(records):
            raise RefusedError("not confirmed: nothing removed", hint="give --yes to remove without asking")
        for key in partial:
            ui.info(f"removing the partial upload {key} (never registered)")
        return catalog.remove([r.id for r in records] + partial)
    finally:
        host.close()


def partial_refs(listing: Listing, refs: Sequence[str]) -> list[str]:
    """Given a catalog listing and remove's refs, return the refs that name a partial upload exactly
    (its ID or file key) and no stored backup: removed without asking, they were never registered."""
    stored = {r.id for r in listing.records}
    keys = {p.key for p in listing.partials}
    return list(dict.fromkeys(ref for ref in refs if ref in keys and ref not in stored))


def remove_across(
    settings: ConnectionSettings, ui: UI, refs: Sequence[str], confirm: Confirm, backup_dir: str
) -> list[str]:
    """remove with several controllers: resolve `refs` in the merged catalogs of those that answer,
    ask, then remove each backup from every controller holding it; return the IDs removed.

    Raise NotFoundError (exit 5) for a ref naming nothing (nothing removed), RefusedError (exit 6)
    if not confirmed, the first controller's error (e.g. LockedError, exit 7) if a removal fails
    (removals from the controllers before it stay done)."""
    from jujubackup.operations.list import list_backups  # list builds on connect_catalog

    merged = list_backups(settings, ui, backup_dir)
    known = [r.id for r in merged.records]
    ids = list(dict.fromkeys(resolve_id(known, ref) for ref in refs))
    records = [r for r in merged.records if r.id in ids]
    if not confirm(records):
        raise RefusedError("not confirmed: nothing removed", hint="give --yes to remove without asking")
    for target in resolve_targets(settings):
        held = [i for i in ids if target.name in merged.holders.get(i, [])]
        if not held:
            continue
        host = connect_one(settings, target)
        try:
            Catalog(host, backup_dir, holder=default_holder("remove")).remove(held)
            ui.info(f"removed from {host.name}: {', '.join(held)}")
        finally:
            host.close()
    return ids
