"""catalog: record building/parsing and lock messages (the pure parts of jujubackup/catalog.py)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from jujubackup.catalog import (
    RC_LOCKED,
    build_record,
    lock_error,
    parse_record,
    stale_lock_warning,
)
from jujubackup.errors import EXIT_LOCKED, RemoteStepError, VerifyError
from jujubackup.metadata import BackupMetadata

BACKUP_ID = "20261126-070000.ffffffff-0000-1111-2222-333333333333"
HOLDER = {
    "operation": "create",
    "holder": "me@ws jujubackup create",
    "pid": 42,
    "started": "2026-11-26T07:00:00Z",
}


def _record() -> dict[str, object]:
    started = datetime(2026, 11, 26, 7, 0, 0, tzinfo=timezone.utc)
    meta = BackupMetadata(started=started, model_uuid=BACKUP_ID.split(".", 1)[1], machine="0", notes="n")
    stored = meta.with_storage(checksum="abc=", size=10, stored=started)
    return build_record(
        stored,
        backup_id=stored.id,
        filename="juju-backup-20261126-070000.tar.gz",
        size=10,
        sha256="0" * 64,
        manifest={"consistency": "online"},
    )


def test_record_round_trip() -> None:
    raw = _record()
    assert raw["ID"] == BACKUP_ID and raw["FormatVersion"] == 1 and raw["archive"] == f"{BACKUP_ID}.tar.gz"
    record = parse_record(json.dumps(raw), "/var/lib/juju/backups/", archive_size=10)
    assert record.id == BACKUP_ID
    assert record.path == f"/var/lib/juju/backups/{BACKUP_ID}.tar.gz"
    assert (record.size, record.sha256, record.archive_present) == (10, "0" * 64, True)
    assert record.row()["mode"] == "online" and record.row()["notes"] == "n"
    assert record.to_dict()["path"] == record.path


def test_record_without_archive_and_bad_records() -> None:
    assert not parse_record(json.dumps(_record()), "/b").archive_present
    with pytest.raises(VerifyError):
        parse_record("{", "/b")
    with pytest.raises(VerifyError):
        parse_record(json.dumps({"Notes": "no id"}), "/b")


def test_lock_error_names_the_holder() -> None:
    err = RemoteStepError("create", RC_LOCKED, f"progress: x\njujubackup-locked: {json.dumps(HOLDER)}\n")
    mapped = lock_error(err, "ctl0")
    assert mapped.exit_code == EXIT_LOCKED
    assert "create by me@ws jujubackup create, pid 42, since 2026-11-26T07:00:00Z" in mapped.message
    assert "ctl0" in mapped.message


def test_lock_error_leaves_other_failures_alone() -> None:
    err = RemoteStepError("create", 1, "error: mongodump failed\n")
    assert lock_error(err) is err


def test_stale_lock_warning() -> None:
    warning = stale_lock_warning(f"jujubackup-stale-lock: {json.dumps(HOLDER)}")
    assert warning is not None and "pid 42" in warning and "stale" in warning
    assert stale_lock_warning("progress: dumping") is None


# --- a controller's record is hostile input (issue 11): typed, validated, never a local path ------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"archive": "/home/op/.venv/lib/python3.12/site-packages/evil.pth"}, "names archive"),
        ({"archive": f"../{BACKUP_ID}.tar.gz"}, "names archive"),
        ({"archive": "evil.pth"}, "names archive"),
        ({"ID": f"../../{BACKUP_ID}"}, "not of the form"),
        ({"ID": f"{BACKUP_ID}/x"}, "not of the form"),
        ({"ID": "20261399-999999.ffffffff-0000-1111-2222-333333333333"}, "real date"),
        ({"ID": 20261126}, "not a string"),
        ({"size": "big"}, "size 'big'"),
        ({"size": -1}, "not a size"),
        ({"size": 1 << 64}, "not a size"),
        ({"size": True}, "not a size"),
        ({"Size": "big"}, "wrong type|unreadable field"),
        ({"Size": 1e999}, "wrong type|unreadable field"),
        ({"Size": -5}, "not a size"),
        ({"sha256": "../x"}, "sha256"),
        ({"Started": "9999-12-31T23:59:59-01:00"}, "wrong type|unreadable field"),
        ({"Started": "0000-01-01T00:00:00Z"}, "wrong type|unreadable field"),
        ({"Stored": "yesterday"}, "unreadable time"),
        ({"manifest": ["x"]}, "manifest"),
        ({"Notes": {"nested": 1}}, "wrong type|unreadable field"),
    ],
)
def test_hostile_record_is_refused_with_exit_8(change: dict[str, object], problem: str) -> None:
    raw = {**_record(), **change}
    with pytest.raises(VerifyError, match=problem) as caught:
        parse_record(json.dumps(raw), "/var/lib/juju/backups")
    assert caught.value.exit_code == 8


def test_deeply_nested_or_huge_record_is_refused_not_a_crash() -> None:
    with pytest.raises(VerifyError):
        parse_record('{"ID": ' + "[" * 100000 + "]" * 100000 + "}", "/b")
    with pytest.raises(VerifyError):
        parse_record('{"ID": "x", "size": 1' + "0" * 5000 + "}", "/b")


def test_the_archive_name_is_built_from_the_id_not_read_from_the_record() -> None:
    raw = _record()
    del raw["archive"]
    record = parse_record(json.dumps(raw), "/var/lib/juju/backups")
    assert record.archive == f"{BACKUP_ID}.tar.gz"
    assert record.path == f"/var/lib/juju/backups/{BACKUP_ID}.tar.gz"
