"""Connecting for the verbs that use only the catalog (no controller probe), and the catalogs of
several controllers merged.

Each controller keeps its own catalog (backups are files in its backup dir), so with several
controllers (-H repeated, or -c with HA endpoints) every reachable one is listed and the catalogs
are merged: each backup says which controllers hold it; prefixes and `latest` resolve against the
merged catalogs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from jujubackup.catalog import Catalog, CatalogRecord, Listing, describe_holder
from jujubackup.connect import connect_each, connect_first
from jujubackup.errors import ConnectError, JujuBackupError
from jujubackup.host.base import Connector, Host
from jujubackup.metadata import is_backup_id, resolve_id
from jujubackup.operations.connecting import check_backup_dir
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.ui import UI, human_bytes, safe_text


def connect_catalog(
    connector: Connector,
    ui: UI,
    backup_dir: str = DEFAULT_BACKUP_DIR,
    *,
    holding: Sequence[str] = (),
) -> Host:
    """Connect for a verb that only reads or changes the catalog (no controller probe: it needs no
    facts): the first of the connector's hosts that answers and, with `holding` (backup IDs, prefixes
    or `latest`), whose catalog resolves all of them - each HA controller keeps its own catalog, so
    a backup made on one is found there. With several controllers, prefixes and `latest` are first
    resolved against all their catalogs merged (resolve_across).

    Raise UsageError (exit 2) for a relative backup dir, NotFoundError (exit 5) when the hosts
    answer but none holds them, ConnectError (exit 3) otherwise (each reason listed).
    """
    check_backup_dir(backup_dir)
    if len(connector.targets()) > 1 and not all(is_backup_id(ref) for ref in holding):
        holding = resolve_across(connector, ui, backup_dir, holding)

    def accept(host: Host) -> bool:
        if holding:
            Catalog(host, backup_dir).resolve(holding)  # NotFoundError: not this controller
        return True

    return connect_first(connector, ui, accept=accept)


def resolve_across(via: Connector, ui: UI, backup_dir: str, refs: Sequence[str]) -> list[str]:
    """Given prefixes or `latest`, return the exact IDs they name in the merged catalogs of all the
    connector's controllers (`latest` is the newest of all, not of the first that has any).
    Raise NotFoundError (exit 5) for a ref that names nothing or is ambiguous there."""
    known = [r.id for r in merged_catalogs(via, ui, backup_dir).records]
    return [resolve_id(known, ref) for ref in refs]


@dataclass
class MergedListing:
    """The merged catalogs: records by ID (oldest first) and, per ID, the controllers holding it."""

    backup_dir: str
    records: list[CatalogRecord] = field(default_factory=list)
    holders: dict[str, list[str]] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    partials: dict[str, list[str]] = field(default_factory=dict)  # partial upload key -> controllers
    rejected: dict[str, dict[str, str]] = field(default_factory=dict)  # record stem -> {controller: why}

    def add(self, host: str, listing: Listing) -> None:
        """Merge one controller's listing (a backup on several controllers is listed once; so are
        its partial uploads and the records that failed validation, each with where it is)."""
        self.listed.append(host)
        known = {r.id for r in self.records}
        for record in listing.records:
            if record.id not in known:
                self.records.append(record)
            self.holders.setdefault(record.id, []).append(host)
        for part in listing.partials:
            self.partials.setdefault(part.key, []).append(host)
        for stem, why in listing.rejected.items():
            self.rejected.setdefault(stem, {})[host] = why
        self.records.sort(key=lambda r: r.id)


def merged_catalogs(connector: Connector, ui: UI, backup_dir: str = DEFAULT_BACKUP_DIR) -> MergedListing:
    """Return the merged catalogs of every controller of the connector that answers; warn about those
    that do not, orphans, broken records and a lock held or left stale.

    Raise ConnectError (exit 3) when no controller answers (a single host: its own error).
    """
    check_backup_dir(backup_dir)
    targets = connector.targets()
    merged = MergedListing(backup_dir)
    if len(targets) == 1:
        host = connect_catalog(connector, ui, backup_dir)
        _list_one(host, merged, ui)
        return merged
    for target, connected, error in connect_each(targets, ui, connector):
        try:
            if connected is None:
                assert error is not None
                raise error
            _list_one(connected, merged, ui)
        except JujuBackupError as err:
            ui.warn(f"{target.display}: not listed: {err.message}")
    if not merged.listed:
        raise ConnectError(f"none of the {len(targets)} controllers could be listed",
                           hint="check each with `jujubackup -H HOST status`")
    return merged


def _list_one(host: Host, merged: MergedListing, ui: UI) -> None:
    """List one controller's catalog into `merged` (and close the host)."""
    try:
        ui.info(f"catalog of {host.name}:{merged.backup_dir}")
        listing = Catalog(host, merged.backup_dir).listing()
    finally:
        host.close()
    merged.add(host.name, listing)
    _warn_about(host.name, listing, ui)


def _warn_about(name: str, listing: Listing, ui: UI) -> None:
    """Say what is wrong with a listing: orphans, broken records, partial uploads, a held or stale lock."""
    for orphan in listing.orphans:
        ui.warn(f"{name}: {safe_text(orphan)} has no record (an unregistered or half-removed archive)")
    for problem in listing.broken:
        ui.warn(f"{name}: unreadable record {problem}")
    for part in listing.partials:
        when = datetime.fromtimestamp(part.mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        ui.warn(f"{name}: partial upload {part.key} ({human_bytes(part.size)}, last written {when}): "
                f"the next upload of that archive resumes it, `remove {part.key}` deletes it")
    if listing.locked:
        ui.info(f"{name}: locked: {describe_holder(listing.lock_holder or {})}")
    elif listing.lock_holder:
        ui.warn(f"{name}: stale lock record ({describe_holder(listing.lock_holder)}): "
                "that run died without cleaning up")
