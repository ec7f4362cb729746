"""The lab's juju-db stand-in: multi-document transactions as MongoDB 4.4 logs them (one applyOps
entry at commit; tests/lab/standins/txn.py) and mongorestore 100.x --oplogReplay applying them
(tests/lab/standins/oplogreplay.py): what the 3.x oplog rewrite is judged against in the lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bson
import pytest

from tests.lab.standins import oplogreplay
from tests.lab.standins.mongod import Conn, Log, Mongod, apply_oplog_entry
from tests.lab.standins.storage import Storage

UUID = "4a3b1c2d-0000-4000-8000-00000000abcd"
LSID = {"id": bson.Binary(b"\x07" * 16, 4)}
M0 = f"{UUID}:0"


def server(tmp_path: Path, family: str = "4.4") -> Mongod:
    (tmp_path / "db").mkdir()
    log = Log(family, str(tmp_path / "log"))
    m = Mongod({"dbpath": str(tmp_path / "db"), "replSet": "juju"}, family, log)
    member = {"_id": 1, "host": "127.0.0.1:27017"}
    m.store.write("local", "system.replset", [{"_id": "juju", "members": [member]}])
    m.store.write("juju", "machines", [{"_id": M0, "addresses": [{"value": "10.201.0.10"}], "txn-revno": 4}])
    return m


def in_txn(cmd: dict[str, Any], number: int, start: bool = False) -> dict[str, Any]:
    out = {**cmd, "lsid": LSID, "txnNumber": bson.Int64(number), "autocommit": False}
    if start:
        out["startTransaction"] = True
    return out


def oplog(m: Mongod) -> list[dict[str, Any]]:
    return [e for e in m.store.read("local", "oplog.rs") if e["op"] != "n"]


def sstxn_address_update(m: Mongod, number: int, address: str) -> list[dict[str, Any]]:
    """juju/mgo v3.0.9 sstxn runTxn: assert (find), update + $set txn-revno, txns.log insert."""
    conn = Conn("127.0.0.1:1", True)
    replies = [
        m.run_command(conn, "juju",
                      in_txn({"find": "machines", "filter": {"_id": M0}}, number, start=True)),
        m.run_command(conn, "juju", in_txn({"update": "machines", "updates": [
            {"q": {"_id": M0},
             "u": {"$set": {"addresses": [{"value": address}], "txn-revno": 5}}}]}, number)),
        m.run_command(conn, "juju", in_txn({"insert": "txns.log", "documents": [
            {"_id": bson.ObjectId(), "machines": {M0: 5}}]}, number)),
    ]
    assert all(r["ok"] for r in replies), replies
    return replies


def test_a_committed_transaction_is_one_applyops_entry_with_its_session(tmp_path: Path) -> None:
    m = server(tmp_path)
    sstxn_address_update(m, 1, "10.201.0.250")
    assert oplog(m) == []  # nothing is logged before the commit
    assert m.run_command(Conn("x", True), "admin", in_txn({"commitTransaction": 1}, 1))["ok"]
    (entry,) = oplog(m)
    assert (entry["op"], entry["ns"], entry["lsid"], entry["txnNumber"]) == ("c", "admin.$cmd", LSID, 1)
    assert entry["prevOpTime"] == {"ts": bson.Timestamp(0, 0), "t": -1}
    update, insert = entry["o"]["applyOps"]
    assert list(entry["o"]) == ["applyOps"]
    assert (update["op"], update["ns"], update["o2"]) == ("u", "juju.machines", {"_id": M0})
    assert update["o"] == {"$v": 1, "$set": {"addresses": [{"value": "10.201.0.250"}], "txn-revno": 5}}
    assert isinstance(update["ui"], bson.Binary) and update["ui"].subtype == 4
    assert (insert["op"], insert["ns"], "ts" in insert) == ("i", "juju.txns.log", False)


def test_an_aborted_transaction_leaves_nothing(tmp_path: Path) -> None:
    m = server(tmp_path)
    before = m.store.read("juju", "machines")
    sstxn_address_update(m, 2, "10.201.0.251")
    assert m.run_command(Conn("x", True), "admin", in_txn({"abortTransaction": 1}, 2))["ok"]
    assert m.store.read("juju", "machines") == before
    assert not m.store.exists("juju", "txns.log") and oplog(m) == []
    again = m.run_command(Conn("x", True), "admin", in_txn({"commitTransaction": 1}, 2))
    assert again["codeName"] == "NoSuchTransaction"


def test_transactions_are_refused_on_the_3_2_family(tmp_path: Path) -> None:
    m = server(tmp_path, "3.2")
    reply = m.run_command(Conn("x", True), "juju", in_txn({"find": "machines"}, 1, start=True))
    assert reply["codeName"] == "IllegalOperation"


def replayed(entries: list[dict[str, Any]], tmp_path: Path) -> list[dict[str, Any]]:
    """Apply `entries` as mongorestore 100.x does onto a store holding the machine; return it."""
    (tmp_path / "target").mkdir()
    store = Storage(str(tmp_path / "target"))
    store.write("juju", "machines", [{"_id": M0, "addresses": [{"value": "10.201.0.99"}]}])
    for op in oplogreplay.replay(entries):
        assert "ui" not in op
        apply_oplog_entry(store, op)
    return store.read("juju", "machines")


def test_mongorestore_replays_a_committed_transaction_op_by_op(tmp_path: Path) -> None:
    m = server(tmp_path)
    sstxn_address_update(m, 1, "10.201.0.250")
    m.run_command(Conn("x", True), "admin", in_txn({"commitTransaction": 1}, 1))
    (doc,) = replayed(oplog(m), tmp_path)
    assert doc["addresses"] == [{"value": "10.201.0.250"}]  # what the restore's rewrite must prevent


def txn_entry(ops: list[dict[str, Any]], ts: int, number: int = 3, **o: Any) -> dict[str, Any]:
    return {"ts": bson.Timestamp(1_700_000_000, ts), "op": "c", "ns": "admin.$cmd",
            "o": {"applyOps": ops, **o}, "lsid": LSID, "txnNumber": bson.Int64(number)}


def setting(address: str) -> dict[str, Any]:
    return {"op": "u", "ns": "juju.machines", "ui": bson.Binary(b"\x01" * 16, 4),
            "o": {"$v": 1, "$set": {"addresses": [{"value": address}]}}, "o2": {"_id": M0}}


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        # a partialTxn chain applies at its last entry, in order
        ([txn_entry([setting("a")], 1, partialTxn=True),
          txn_entry([setting("b")], 2, count=bson.Int64(2))], "b"),
        # a chain that never ends in the dump is never applied
        ([txn_entry([setting("a")], 1, partialTxn=True)], "10.201.0.99"),
        # prepared: applied at commitTransaction; aborted: never
        ([txn_entry([setting("p")], 1, prepare=True),
          {"ts": bson.Timestamp(1_700_000_000, 2), "op": "c", "ns": "admin.$cmd", "lsid": LSID,
           "txnNumber": bson.Int64(3),
           "o": {"commitTransaction": 1, "commitTimestamp": bson.Timestamp(0, 1)}}],
         "p"),
        ([txn_entry([setting("p")], 1, prepare=True),
          {"ts": bson.Timestamp(1_700_000_000, 2), "op": "c", "ns": "admin.$cmd", "lsid": LSID,
           "txnNumber": bson.Int64(3), "o": {"abortTransaction": 1}}], "10.201.0.99"),
        # a plain applyOps command, nested: each op handled as a top-level one
        ([{"ts": bson.Timestamp(1_700_000_000, 1), "op": "c", "ns": "admin.$cmd",
           "o": {"applyOps": [{"op": "c", "ns": "admin.$cmd", "o": {"applyOps": [setting("n")]}}]}}], "n"),
    ],
)
def test_mongorestore_transaction_forms(tmp_path: Path, entries: list[dict[str, Any]], expected: str) -> None:
    (doc,) = replayed(entries, tmp_path)
    assert doc["addresses"] == [{"value": expected}]


def test_mongorestore_skips_noops_and_internal_config_and_fails_on_unknown_commands() -> None:
    entries = [
        {"op": "n", "ns": "", "o": {"msg": "x"}},
        {"op": "u", "ns": "config.transactions", "o": {"$set": {"state": "committed"}}, "o2": {"_id": 1}},
        {"op": "c", "ns": "juju.$cmd", "o": {"startIndexBuild": "machines"}},
    ]
    assert list(oplogreplay.replay(entries)) == []
    with pytest.raises(oplogreplay.ReplayError, match="unknown oplog command name frobnicate"):
        list(oplogreplay.replay([{"op": "c", "ns": "juju.$cmd", "o": {"frobnicate": 1}}]))
