"""remove: delete stored backups (IDs, unique prefixes or `latest`), asking first unless --yes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from jujubackup.catalog import Catalog, CatalogRecord, default_holder
from jujubackup.errors import RefusedError
from jujubackup.operations.status import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI


def remove(
    settings: ConnectionSettings,
    ui: UI,
    refs: Sequence[str],
    confirm: Callable[[list[CatalogRecord]], bool],
    backup_dir: str = DEFAULT_BACKUP_DIR,
) -> list[str]:
    """Resolve every ref, ask `confirm(records)`, then delete them; return the IDs removed.

    Raise NotFoundError (exit 5) if a ref names nothing (nothing is removed then), LockedError
    (exit 7) when another operation holds the lock, RefusedError (exit 6) if not confirmed.
    """
    host = connect_catalog(settings, ui, backup_dir, holding=refs)
    try:
        ui.info(f"catalog of {host.name}:{backup_dir}")
        catalog = Catalog(host, backup_dir, holder=default_holder("remove"))
        records = list({r.id: r for r in catalog.resolve(refs)}.values())
        if not confirm(records):
            raise RefusedError("not confirmed: nothing removed", hint="give --yes to remove without asking")
        return catalog.remove([r.id for r in records])
    finally:
        host.close()
