"""list: the stored backups of the controllers' catalogs (oldest first), merged over every
controller that answers (catalogs.merged_catalogs: each backup says which controllers hold it)."""

from __future__ import annotations

from jujubackup.host.base import Connector
from jujubackup.operations.catalogs import MergedListing, merged_catalogs
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.ui import UI

__all__ = ["MergedListing", "list_backups"]


def list_backups(via: Connector, ui: UI, backup_dir: str = DEFAULT_BACKUP_DIR) -> MergedListing:
    """Return the merged catalogs of every controller that answers; warn about those that do not,
    orphans, broken records, partial uploads and a lock held or left stale.

    Raise UsageError (exit 2) for a bad backup dir, ConnectError (exit 3) when no controller
    answers (a single host: its own error).
    """
    return merged_catalogs(via, ui, backup_dir)
