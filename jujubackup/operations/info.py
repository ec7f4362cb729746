"""info: one stored backup's record, by ID, unique prefix or `latest`."""

from __future__ import annotations

from jujubackup.catalog import Catalog, CatalogRecord
from jujubackup.connect import ConnectWith
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.ui import UI


def info(via: ConnectWith, ui: UI, ref: str, backup_dir: str = DEFAULT_BACKUP_DIR) -> CatalogRecord:
    """Return the record `ref` names. Raise NotFoundError (exit 5) if none or ambiguous."""
    host = connect_catalog(via, ui, backup_dir, holding=[ref])
    try:
        ui.info(f"catalog of {host.name}:{backup_dir}")
        record = Catalog(host, backup_dir).get(ref)
    finally:
        host.close()
    if not record.archive_present:
        ui.warn(f"the archive {record.path} of {record.id} is missing")
    return record
