"""Multi-document transactions of the stand-in mongod (4.4 only) and the oplog entries they write.
Test code, never shipped.

What a driver sends and what MongoDB 4.4 does with it (juju/mgo v3.0.9 sstxn/sstxn.go runTxn is the
client Juju 3.x uses for every state change: StartTransaction, finds (asserts), the updates and
inserts, the txns.log insert, CommitTransaction):
- every command of a transaction carries `lsid`, `txnNumber` and `autocommit: false`; the first one
  also `startTransaction: true`; `commitTransaction` / `abortTransaction` end it (on admin). A command
  of a transaction that was never started, or has ended, fails NoSuchTransaction (251); a transaction
  on a server that is no replica-set member, or on 3.2, fails IllegalOperation (20).
- at commit ONE oplog entry is written (an unprepared transaction of less than 16 MB; mongodb/mongo
  src/mongo/db/op_observer_impl.cpp logOplogEntriesForTransaction: `applyOps` on `admin.$cmd`, no
  `partialTxn`, no `prepare`, no `count` for a single entry) carrying `lsid`, `txnNumber` and
  `prevOpTime` {ts: Timestamp(0, 0), t: -1}; each op in it has `op`, `ns`, `ui` (the collection's
  UUID), `o` and, for updates, `o2` - and no ts/t/h/wall of its own. A transaction that wrote nothing
  or was aborted writes no entry (an unprepared abort is not logged).
- an update's oplog `o` (4.4, modifier form) is `{$v: 1, $set: {...}, $unset: {...}}` naming the
  updated paths with their resulting values (see oplog_update); a replacement logs the new document.
Simplification (the lab has one writer at a time): a transaction's writes go to the collections when
made, so other readers see them before the commit; an abort puts the touched collections back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import bson

from .storage import _get_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from .storage import Storage

TXN_WRITES = {"insert": "insert", "update": "update", "delete": "delete"}
TXN_READS = {"find", "count"}
NO_PREV_OPTIME = {"ts": bson.Timestamp(0, 0), "t": bson.Int64(-1)}


def oplog_update(update: dict, new: dict, series: str) -> dict:
    """Given an update command's `u` and the updated document, return the oplog entry's `o`: the
    replacement itself, or `$set` of every path the modifiers named with its value in `new` and
    `$unset` of the unset ones, `$v: 1` first on 4.4 (3.2 writes no `$v`)."""
    if not any(k.startswith("$") for k in update):
        return new
    sets: dict[str, Any] = {}
    unsets: dict[str, Any] = {}
    for modifier, spec in update.items():
        for path in spec if isinstance(spec, dict) else {}:
            if modifier == "$unset":
                unsets[path] = True
            else:
                sets[path] = _get_path(new, path)
    out: dict[str, Any] = {"$v": 1} if series == "4.4" else {}
    if sets:
        out["$set"] = sets
    if unsets:
        out["$unset"] = unsets
    return out


@dataclass
class Txn:
    """One open transaction: its session, the ops it logged, the collections as they were."""

    lsid: dict
    number: int
    ops: list[dict] = field(default_factory=list)
    before: dict[tuple[str, str], list[dict] | None] = field(default_factory=dict)


class Transactions:
    """The open transactions of one mongod, by (lsid, txnNumber)."""

    def __init__(self, store: Storage, series: str, is_replset: Callable[[], bool]) -> None:
        self.store = store
        self.series = series
        self.is_replset = is_replset
        self.open: dict[tuple[bytes, int], Txn] = {}

    def run(self, db: str, name: str, cmd: dict, handler: Callable[[], dict]) -> dict:
        """Run command `name` (handler runs it outside a transaction) as part of the transaction
        `cmd` names; return the reply."""
        if self.series != "4.4" or not self.is_replset():
            return _err("Transaction numbers are only allowed on a replica set member or mongos",
                        20, "IllegalOperation")
        lsid, number = _session_id(cmd.get("lsid")), cmd.get("txnNumber")
        if lsid is None or not isinstance(number, int):
            return _err("a transaction needs lsid {id: UUID} and a txnNumber", 9, "FailedToParse")
        key = (bson.encode(lsid), int(number))
        with self.store.lock:
            txn = self.open.get(key)
            if cmd.get("startTransaction") is True:
                if txn is not None:
                    return _err(f"Transaction {number} has already started", 251, "NoSuchTransaction")
                txn = self.open[key] = Txn(lsid, int(number))
            elif txn is None:
                return _err(f"Transaction {number} has been aborted or was never started.",
                            251, "NoSuchTransaction")
            if name == "commitTransaction":
                return self._commit(key, txn)
            if name == "abortTransaction":
                return self._abort(key, txn)
            if name in TXN_READS:
                return handler()
            if name not in TXN_WRITES:
                return _err(f"Cannot run '{name}' in a multi-document transaction.",
                            263, "OperationNotSupportedInTransaction")
            coll = str(cmd[name])
            if (db, coll) not in txn.before:
                txn.before[(db, coll)] = self.store.read(db, coll) if self.store.exists(db, coll) else None
            self.store.capture = txn.ops
            try:
                return handler()
            finally:
                self.store.capture = None

    def _commit(self, key: tuple[bytes, int], txn: Txn) -> dict:
        del self.open[key]
        if txn.ops:
            ops = [self._repl_operation(e) for e in txn.ops]
            extra = {"lsid": txn.lsid, "txnNumber": bson.Int64(txn.number), "prevOpTime": NO_PREV_OPTIME}
            self.store.oplog_append("c", "admin.$cmd", {"applyOps": ops}, extra=extra)
        return {"ok": 1.0}

    def _abort(self, key: tuple[bytes, int], txn: Txn) -> dict:
        del self.open[key]
        for (db, coll), docs in txn.before.items():
            if docs is None:
                self.store.drop(db, coll)
            else:
                self.store.write(db, coll, docs)
        return {"ok": 1.0}

    def _repl_operation(self, entry: dict) -> dict:
        """Return one captured write as an op inside a transaction's applyOps (with `ui`)."""
        db, _, coll = entry["ns"].partition(".")
        ui = bson.Binary(uuid.UUID(hex=self.store.metadata(db, coll)["uuid"]).bytes, 4)
        op = {"op": entry["op"], "ns": entry["ns"], "ui": ui, "o": entry["o"]}
        if entry.get("o2") is not None:
            op["o2"] = entry["o2"]
        return op


def _session_id(lsid: Any) -> dict | None:
    """Return a command's `lsid` with its `id` as BSON UUID (subtype 4), or None if it has none. The
    lab's older pymongo decodes subtype 4 to uuid.UUID, which it would encode as subtype 3."""
    if not isinstance(lsid, dict):
        return None
    sid = lsid.get("id")
    if isinstance(sid, uuid.UUID):
        return {**lsid, "id": bson.Binary(sid.bytes, 4)}
    if isinstance(sid, bson.Binary) and sid.subtype == 4:
        return lsid
    return None


def _err(msg: str, code: int, name: str) -> dict:
    return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}
