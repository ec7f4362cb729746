"""What a restore takes from a passed verification (local_archives.contents_of): the unpacked size and
whether the dump has an oplog to replay. `mongodump --oplog` of a DB nobody wrote to during the dump
leaves an empty oplog.bson; load-db replays only a non-empty one (`[[ -s oplog.bson ]]`), so the plan
and fresh-db's replay role must follow the same rule."""

from __future__ import annotations

from jujubackup.archive.layout import MemberInfo, VerifyReport
from jujubackup.local_archives import contents_of


def report(oplog_size: int | None) -> VerifyReport:
    members = [MemberInfo("dump/juju/machines.bson", "file", 100)]
    if oplog_size is not None:
        members.append(MemberInfo("dump/oplog.bson", "file", oplog_size))
    return VerifyReport("x", members=members, root_members=[MemberInfo("etc/x", "file", 7)])


def test_a_non_empty_oplog_is_replayed() -> None:
    assert contents_of(report(42)) == {"unpacked_bytes": 149, "has_oplog": True}


def test_an_empty_or_missing_oplog_is_not() -> None:
    assert contents_of(report(0))["has_oplog"] is False
    assert contents_of(report(None))["has_oplog"] is False
