"""remove's plan (pure): what the refs name across the controllers' catalogs, partial uploads and
records that failed validation included (issue 11)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from jujubackup.catalog import CatalogRecord, Listing, Partial, build_record, parse_record
from jujubackup.errors import NotFoundError
from jujubackup.metadata import BackupMetadata
from jujubackup.operations.list import MergedListing
from jujubackup.operations.remove import plan_removal

UUID = "ffffffff-0000-1111-2222-333333333333"
GOOD = f"20261126-070000.{UUID}"
BAD = f"20261127-070000.{UUID}"      # its record fails validation (newer than GOOD)
PART = f"20261128-070000.{UUID}"     # a partial upload only
DIR = "/var/lib/juju/backups"


def _record(backup_id: str) -> CatalogRecord:
    started = datetime(2026, 11, 26, 7, 0, 0, tzinfo=timezone.utc)
    meta = BackupMetadata(started=started, model_uuid=UUID, machine="0", notes="n")
    stored = meta.with_storage(checksum="abc=", size=10, stored=started)
    raw = build_record(stored, backup_id=backup_id, filename="juju-backup-20261126-070000.tar.gz", size=10,
                       sha256="0" * 64, manifest={})
    return parse_record(json.dumps(raw), DIR, archive_size=10)


def _merged() -> MergedListing:
    merged = MergedListing(DIR)
    rejected = {BAD: "catalog record's size 'big' is not a size", "junk": "catalog record is not JSON"}
    merged.add("ctl0", Listing(DIR, [_record(GOOD)], rejected=rejected))
    merged.add("ctl1", Listing(DIR, [], partials=[Partial(PART, f".upload-{PART}.tar.gz.part", 5, 0)]))
    return merged


def test_a_stored_id_whose_record_is_invalid_is_removable_by_its_full_id() -> None:
    merged = _merged()
    removal = plan_removal(merged, [BAD])
    assert removal.records == [] and removal.invalid == {BAD: "catalog record's size 'big' is not a size"}
    assert removal.held_by(merged, "ctl0") == [BAD] and removal.held_by(merged, "ctl1") == []


@pytest.mark.parametrize("ref", [BAD[:20], "junk"])  # a prefix, or a stem that is no backup ID
def test_an_invalid_record_is_never_named_by_a_prefix_or_a_non_id(ref: str) -> None:
    with pytest.raises(NotFoundError):
        plan_removal(_merged(), [ref])


def test_latest_never_means_an_invalid_record() -> None:
    removal = plan_removal(_merged(), ["latest"])
    assert [r.id for r in removal.records] == [GOOD] and removal.invalid == {}


def test_a_partial_only_id_is_removed_from_the_controller_holding_it() -> None:
    merged = _merged()
    removal = plan_removal(merged, [PART, GOOD])
    assert removal.partials == [PART] and [r.id for r in removal.records] == [GOOD]
    assert removal.held_by(merged, "ctl1") == [PART] and removal.held_by(merged, "ctl0") == [GOOD]
