"""list: the stored backups of a controller's catalog (oldest first)."""

from __future__ import annotations

from jujubackup.catalog import Catalog, Listing, describe_holder
from jujubackup.operations.status import connect_controller
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI


def list_backups(settings: ConnectionSettings, ui: UI, backup_dir: str = DEFAULT_BACKUP_DIR) -> Listing:
    """Return the catalog of the first controller that answers; warn about orphans, broken records
    and a lock held or left stale."""
    host, _facts = connect_controller(settings, ui, backup_dir, require_healthy=False)
    try:
        ui.info(f"catalog of {host.name}:{backup_dir} (each controller keeps its own)")
        listing = Catalog(host, backup_dir).listing()
    finally:
        host.close()
    for name in listing.orphans:
        ui.warn(f"{name} has no record (an unregistered or half-removed archive)")
    for problem in listing.broken:
        ui.warn(f"unreadable record {problem}")
    if listing.locked:
        ui.info(f"locked: {describe_holder(listing.lock_holder or {})}")
    elif listing.lock_holder:
        ui.warn(
            f"stale lock record ({describe_holder(listing.lock_holder)}): that run died without cleaning up"
        )
    return listing
