"""Data directory of the stand-in mongod (juju-db, MongoDB 4.4 / 3.2): storage and query semantics.

Test code, never shipped.  The on-disk format is described in common.py; this module is also used
by tests/lab/provision.py to seed a controller's database before boot and by read_db().
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import re
import shutil
import threading
import uuid
from typing import Any

import bson

from . import common

SYSTEM_DBS = ("admin", "local", "config")


def default_metadata(db: str, coll: str) -> dict:
    """Given a namespace, return the collection metadata a new collection gets (an _id index)."""
    return {
        "options": {},
        "indexes": [{"v": 2, "key": {"_id": 1}, "name": "_id_", "ns": f"{db}.{coll}"}],
        "uuid": uuid.uuid4().hex,
    }


class Storage:
    """The files under --dbpath.  All methods are thread-safe (one lock)."""

    def __init__(self, dbpath: str) -> None:
        self.dbpath = dbpath
        self.lock = threading.RLock()
        self.capture: list[dict] | None = None
        """While a transaction's write runs (txn.py, lock held): where its oplog entries go instead."""

    # ---- paths and listing
    def file(self, db: str, coll: str) -> str:
        """Return the .bson path of a collection."""
        return os.path.join(self.dbpath, db, coll + ".bson")

    def meta_file(self, db: str, coll: str) -> str:
        """Return the .metadata.json path of a collection."""
        return os.path.join(self.dbpath, db, coll + ".metadata.json")

    def databases(self) -> list[str]:
        """Return the database names that hold at least one collection."""
        out = []
        for name in sorted(os.listdir(self.dbpath)):
            if os.path.isdir(os.path.join(self.dbpath, name)) and self.collections(name):
                out.append(name)
        return out

    def collections(self, db: str) -> list[str]:
        """Return the collection names of a database."""
        d = os.path.join(self.dbpath, db)
        if not os.path.isdir(d):
            return []
        return sorted(f[:-5] for f in os.listdir(d) if f.endswith(".bson"))

    def exists(self, db: str, coll: str) -> bool:
        """Return True if the collection exists."""
        return os.path.exists(self.file(db, coll))

    def size(self, db: str, coll: str) -> int:
        """Return the BSON data size of a collection (0 if missing)."""
        try:
            return os.path.getsize(self.file(db, coll))
        except FileNotFoundError:
            return 0

    def storage_size(self, db: str, coll: str) -> int:
        """Return the allocated size on disk of a collection."""
        try:
            return os.stat(self.file(db, coll)).st_blocks * 512
        except FileNotFoundError:
            return 0

    # ---- reading and writing
    def read(self, db: str, coll: str) -> list[dict]:
        """Return all documents of a collection."""
        with self.lock:
            return common.read_file_docs(self.file(db, coll))

    def iter(self, db: str, coll: str):
        """Yield (raw, doc) for each document (streams big collections)."""
        return common.iter_file_docs(self.file(db, coll))

    def metadata(self, db: str, coll: str) -> dict:
        """Return the collection metadata (default if missing)."""
        try:
            with open(self.meta_file(db, coll)) as f:
                meta = json.load(f)
        except FileNotFoundError:
            return default_metadata(db, coll)
        if not isinstance(meta.get("uuid"), str) or len(meta["uuid"]) != 32:
            meta["uuid"] = default_metadata(db, coll)["uuid"]
        return meta

    def create(self, db: str, coll: str, metadata: dict | None = None) -> None:
        """Create an empty collection if it does not exist (with metadata)."""
        with self.lock:
            os.makedirs(os.path.join(self.dbpath, db), exist_ok=True)
            if not os.path.exists(self.file(db, coll)):
                open(self.file(db, coll), "wb").close()
            if metadata is not None or not os.path.exists(self.meta_file(db, coll)):
                self._write_meta(db, coll, metadata or default_metadata(db, coll))

    def _write_meta(self, db: str, coll: str, metadata: dict) -> None:
        tmp = self.meta_file(db, coll) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(metadata, f)
        os.replace(tmp, self.meta_file(db, coll))

    def write(self, db: str, coll: str, docs: list[dict]) -> None:
        """Replace the documents of a collection (atomic rename)."""
        with self.lock:
            self.create(db, coll)
            tmp = self.file(db, coll) + ".tmp"
            with open(tmp, "wb") as f:
                for d in docs:
                    f.write(common.encode(d))
            os.replace(tmp, self.file(db, coll))

    def append(self, db: str, coll: str, docs: list[dict]) -> None:
        """Append documents to a collection."""
        with self.lock:
            self.create(db, coll)
            with open(self.file(db, coll), "ab") as f:
                for d in docs:
                    f.write(common.encode(d))

    def append_raw(self, db: str, coll: str, raw: bytes) -> None:
        """Append already encoded BSON documents to a collection."""
        with self.lock:
            self.create(db, coll)
            with open(self.file(db, coll), "ab") as f:
                f.write(raw)

    def replace_file(self, db: str, coll: str, tmp_path: str, metadata: dict | None) -> None:
        """Install a fully written .bson file as the collection's data (used by bulk loads)."""
        if metadata is not None:  # a restore gets a new collection UUID, as without --preserveUUID
            metadata = {**default_metadata(db, coll), **metadata, "uuid": uuid.uuid4().hex}
        with self.lock:
            self.create(db, coll, metadata)
            os.replace(tmp_path, self.file(db, coll))

    def drop(self, db: str, coll: str) -> bool:
        """Drop a collection; return True if it existed."""
        with self.lock:
            existed = self.exists(db, coll)
            for p in (self.file(db, coll), self.meta_file(db, coll)):
                if os.path.exists(p):
                    os.unlink(p)
            return existed

    def drop_database(self, db: str) -> None:
        """Drop a whole database."""
        with self.lock:
            shutil.rmtree(os.path.join(self.dbpath, db), ignore_errors=True)

    # ---- oplog
    def oplog_path(self) -> str:
        """Return the path of local.oplog.rs."""
        return self.file("local", "oplog.rs")

    def oplog_append(
        self, op: str, ns: str, o: dict, o2: dict | None = None, extra: dict | None = None
    ) -> None:
        """Record one write in the oplog (called with the lock held by the writer); `extra`: more
        top-level fields (a transaction's lsid, txnNumber, prevOpTime). Inside a transaction's write
        (`capture` set) the entry is kept for its commit instead."""
        with self.lock:
            if self.capture is not None:
                self.capture.append({"op": op, "ns": ns, "o": o, "o2": o2})
                return
            last = getattr(self, "_last_ts", None)
            ts = common.now_ts(last)
            self._last_ts = ts
            entry: dict[str, Any] = {
                "ts": ts,
                "t": bson.Int64(1),
                "h": bson.Int64(0),
                "v": 2,
                "op": op,
                "ns": ns,
                "wall": datetime.datetime.utcnow().replace(microsecond=0),
            }
            if o2 is not None:
                entry["o2"] = o2
            entry["o"] = o
            entry.update(extra or {})
            self.append("local", "oplog.rs", [entry])

    def oplog_size(self) -> int:
        """Return the current byte size of the oplog."""
        return self.size("local", "oplog.rs")


# --------------------------------------------------------------------------- query semantics


def _values(doc: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [doc]
    head, rest = parts[0], parts[1:]
    if isinstance(doc, dict):
        return _values(doc[head], rest) if head in doc else []
    if isinstance(doc, list):
        out: list[Any] = []
        if head.isdigit() and int(head) < len(doc):
            out += _values(doc[int(head)], rest)
        for el in doc:
            if isinstance(el, dict):
                out += _values(el, parts)
        return out
    return []


def _eq(v: Any, cond: Any) -> bool:
    is_bool = type(v) is bool or type(cond) is bool
    same = (type(v) is type(cond) and v == cond) if is_bool else v == cond
    if same:
        return True
    return isinstance(v, list) and any(_eq(x, cond) for x in v if not isinstance(x, list))


def _cmp(v: Any, cond: Any, op: str) -> bool:
    cands = v if isinstance(v, list) else [v]
    for x in cands:
        try:
            if (
                (op == "$gt" and x > cond)
                or (op == "$gte" and x >= cond)
                or (op == "$lt" and x < cond)
                or (op == "$lte" and x <= cond)
            ):
                return True
        except TypeError:
            continue
    return False


def _match_cond(values: list[Any], cond: Any) -> bool:
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        for op, arg in cond.items():
            if op == "$eq":
                ok = any(_eq(v, arg) for v in values) or (arg is None and not values)
            elif op == "$ne":
                ok = not (any(_eq(v, arg) for v in values) or (arg is None and not values))
            elif op == "$in":
                ok = any(any(_eq(v, a) for v in values) for a in arg) or (None in arg and not values)
            elif op == "$nin":
                ok = not any(any(_eq(v, a) for v in values) for a in arg)
            elif op == "$exists":
                ok = bool(values) == bool(arg)
            elif op in ("$gt", "$gte", "$lt", "$lte"):
                ok = any(_cmp(v, arg, op) for v in values)
            elif op == "$regex":
                rx = re.compile(arg, re.I if "i" in cond.get("$options", "") else 0)
                ok = any(isinstance(v, str) and rx.search(v) for v in values)
            elif op == "$options":
                ok = True
            elif op == "$size":
                ok = any(isinstance(v, list) and len(v) == arg for v in values)
            elif op == "$elemMatch":
                ok = any(
                    isinstance(v, list)
                    and any(matches(x, arg) if isinstance(x, dict) else _match_cond([x], arg) for x in v)
                    for v in values
                )
            elif op == "$not":
                ok = not _match_cond(values, arg)
            else:
                raise ValueError(f"unknown operator: {op}")
            if not ok:
                return False
        return True
    if isinstance(cond, bson.Regex | re.Pattern):
        rx = re.compile(cond.pattern)
        return any(isinstance(v, str) and rx.search(v) for v in values)
    if cond is None:
        return not values or any(v is None for v in values)
    return any(_eq(v, cond) for v in values)


def matches(doc: dict, filt: dict | None) -> bool:
    """Given a document and a MongoDB query filter (common subset), return True if it matches.

    Raise ValueError on an unsupported operator."""
    for key, cond in (filt or {}).items():
        if key == "$and":
            if not all(matches(doc, f) for f in cond):
                return False
        elif key == "$or":
            if not any(matches(doc, f) for f in cond):
                return False
        elif key == "$nor":
            if any(matches(doc, f) for f in cond):
                return False
        elif key.startswith("$"):
            raise ValueError(f"unknown top level operator: {key}")
        elif not _match_cond(_values(doc, key.split(".")), cond):
            return False
    return True


def project(doc: dict, projection: dict | None) -> dict:
    """Apply a simple inclusion/exclusion projection."""
    if not projection:
        return doc
    include = [k for k, v in projection.items() if v and k != "_id"]
    if include:
        out = {"_id": doc["_id"]} if projection.get("_id", 1) and "_id" in doc else {}
        for k in include:
            vals = _values(doc, k.split("."))
            if vals:
                _set_path(out, k, vals[0])
        return out
    out = dict(doc)
    for k, v in projection.items():
        if not v:
            _unset_path(out, k)
    return out


def _set_path(doc: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    cur = doc
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(cur, list):
            idx = int(p)
            while len(cur) <= idx:
                cur.append(None)
            if last:
                cur[idx] = value
            else:
                if not isinstance(cur[idx], dict | list):
                    cur[idx] = {}
                cur = cur[idx]
        else:
            if last:
                cur[p] = value
            else:
                if not isinstance(cur.get(p), dict | list):
                    cur[p] = {}
                cur = cur[p]


def _get_path(doc: Any, path: str) -> Any:
    cur = doc
    for p in path.split("."):
        if isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            return None
    return cur


def _unset_path(doc: Any, path: str) -> None:
    parts = path.split(".")
    parent = _get_path(doc, ".".join(parts[:-1])) if len(parts) > 1 else doc
    if isinstance(parent, dict):
        parent.pop(parts[-1], None)
    elif isinstance(parent, list) and parts[-1].isdigit() and int(parts[-1]) < len(parent):
        parent[int(parts[-1])] = None


def apply_update(doc: dict, update: dict) -> dict:
    """Given a document and an update (replacement or $-operators), return the new document.

    Raise ValueError on an unsupported operator or an attempt to change _id."""
    if not any(k.startswith("$") for k in update):
        new = dict(update)
        if "_id" in doc:
            if "_id" in new and new["_id"] != doc["_id"]:
                raise ValueError("the (immutable) field '_id' was found to have been altered")
            new = {"_id": doc["_id"], **{k: v for k, v in new.items() if k != "_id"}}
        return new
    new = copy.deepcopy(doc)
    for op, fields in update.items():
        for path, arg in fields.items():
            if path == "_id" and op != "$setOnInsert":
                raise ValueError(
                    "Performing an update on the path '_id' would modify the immutable field '_id'"
                )
            if op in ("$set", "$setOnInsert"):
                _set_path(new, path, arg)
            elif op == "$unset":
                _unset_path(new, path)
            elif op == "$inc":
                _set_path(new, path, (_get_path(new, path) or 0) + arg)
            elif op in ("$push", "$addToSet"):
                cur = _get_path(new, path)
                if cur is None:
                    cur = []
                    _set_path(new, path, cur)
                items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                for it in items:
                    if op == "$push" or it not in cur:
                        cur.append(it)
            elif op == "$pull":
                cur = _get_path(new, path)
                if isinstance(cur, list):
                    keep = [
                        x
                        for x in cur
                        if not (
                            matches(x, arg) if isinstance(arg, dict) and isinstance(x, dict) else _eq(x, arg)
                        )
                    ]
                    _set_path(new, path, keep)
            else:
                raise ValueError(f"Unknown modifier: {op}")
    return new


def upsert_seed(query: dict) -> dict:
    """Given an update query, return the equality fields a new upserted document starts with."""
    out: dict = {}
    for k, v in query.items():
        if k.startswith("$"):
            continue
        if isinstance(v, dict) and any(x.startswith("$") for x in v):
            if "$eq" in v:
                _set_path(out, k, v["$eq"])
            continue
        _set_path(out, k, v)
    return out
