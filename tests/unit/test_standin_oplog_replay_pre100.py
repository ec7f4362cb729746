"""The pre-100 mongorestore stand-in replays the oplog as mongo-tools r3.2.22, r3.6.3 and r4.0.9
mongorestore/oplog.go RestoreOplog do: every entry but a no-op, admin.* included, each alone in an
applyOps command, reduced to the fields of common/db/db.go `type Oplog struct`."""

from __future__ import annotations

from typing import Any

import bson
import pytest

from tests.lab.standins import tools


class FakeSession:
    """Records the commands the replay sends; fails applyOps on a namespace when told to."""

    def __init__(self, fail_ns: str = "") -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail_ns = fail_ns

    def checked(self, db: str, cmd: dict[str, Any], what: str) -> dict[str, Any]:
        self.sent.append((db, cmd))
        if self.fail_ns and cmd["applyOps"][0]["ns"] == self.fail_ns:
            raise tools.ToolError(f"{what}: boom")
        return {"ok": 1.0}


LSID = {"id": bson.Binary(b"\x02" * 16, 4)}
ENTRIES = [
    {"ts": bson.Timestamp(1, 1), "h": bson.Int64(0), "v": 2, "op": "n", "ns": "", "o": {"msg": "x"}},
    {"ts": bson.Timestamp(1, 2), "t": bson.Int64(1), "h": bson.Int64(0), "v": 2, "op": "u",
     "ns": "admin.system.users", "ui": bson.Binary(b"\x01" * 16, 4), "wall": None,
     "o": {"$set": {"credentials": {}}}, "o2": {"_id": "admin.machine-0"}},
    {"ts": bson.Timestamp(1, 3), "h": bson.Int64(0), "v": 2, "op": "i", "ns": "juju.machines",
     "o": {"_id": "m"}},
    {"ts": bson.Timestamp(1, 4), "h": bson.Int64(0), "v": 2, "op": "c", "ns": "admin.$cmd",
     "lsid": LSID, "txnNumber": bson.Int64(1),
     "o": {"applyOps": [{"op": "i", "ns": "juju.x", "ui": bson.Binary(b"\x01" * 16, 4), "o": {"_id": 1}}]}},
]


@pytest.mark.parametrize("tools_version", ["r3.2.22", "r3.6.3", "r4.0.9"])
def test_every_entry_but_no_ops_is_applied_alone_admin_included(tools_version: str) -> None:
    session = FakeSession()
    applied = tools._replay_pre_100(session, ENTRIES, tools_version)  # type: ignore[arg-type]
    assert applied == 3 and len(session.sent) == 3
    ops = [cmd["applyOps"] for db, cmd in session.sent]
    assert all(db == "admin" for db, _ in session.sent) and all(len(o) == 1 for o in ops)
    assert [o[0]["ns"] for o in ops] == ["admin.system.users", "juju.machines", "admin.$cmd"]
    assert set(ops[0][0]) == {"ts", "h", "v", "op", "ns", "o", "o2"}  # t, ui, wall gone
    assert set(ops[2][0]) == {"ts", "h", "v", "op", "ns", "o"}  # lsid, txnNumber gone
    nested = ops[2][0]["o"]["applyOps"][0]
    # r3.6+ filterUUIDs re-decodes the nested ops into db.Oplog (ui gone); r3.2 sends them as they are
    assert ("ui" in nested) == (tools_version == "r3.2.22")


def test_a_failed_entry_stops_the_replay_with_mongo_tools_message() -> None:
    session = FakeSession(fail_ns="admin.system.users")
    with pytest.raises(tools.ToolError, match="error applying oplog: applyOps: boom"):
        tools._replay_pre_100(session, ENTRIES, "r4.0.9")  # type: ignore[arg-type]
    assert len(session.sent) == 1
