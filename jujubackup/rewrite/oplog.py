"""oplog.bson and txns rewritten so a replay does not undo the re-addressing."""

from __future__ import annotations

import copy
import struct
from collections.abc import Iterable, Mapping
from typing import IO, Any

import bson

from jujubackup import archive
from jujubackup.rewrite.documents import REMOVED
from jujubackup.rewrite.layout import OPLOG, Change, Doc, _plain
from jujubackup.rewrite.streams import _documents


def _id_key(doc_id: Any) -> bytes:
    """Return a hashable, type-exact key for a document _id."""
    return bson.encode({"_id": doc_id})


def _targets(changes: Iterable[Change]) -> dict[tuple[str, bytes], dict[str, Any]]:
    """Group changes of dump collections by (namespace, _id) -> {path: new value}."""
    out: dict[tuple[str, bytes], dict[str, Any]] = {}
    for c in changes:
        if c.collection.count(".") >= 1 and c.collection not in ("agent.conf", "oplog"):
            out.setdefault((c.collection, _id_key(c.doc_id)), {})[c.field] = c.new
    return out


def rewrite_oplog_stream(src: IO[bytes], dst: IO[bytes], changes: Iterable[Change]) -> list[Change]:
    """Given dump/oplog.bson and the changes made to the collection files, copy the oplog so that
    replaying it cannot undo them (see the module docstring); return what was changed in the oplog
    (collection "oplog", doc_id "<ns> <_id>", field "op #<n> <what>", n counting from 0)."""
    targets = _targets(changes)
    namespaces = {ns for ns, _ in targets}
    out: list[Change] = []
    for n, raw in enumerate(_documents(src, OPLOG)):
        op = bson.decode(raw, archive.BSON_CODEC) if namespaces else None
        if op is None or op.get("ns") not in namespaces:
            dst.write(raw)
            continue
        before = len(out)
        keep = _rewrite_op(op, targets, n, out)
        if keep:
            dst.write(bson.encode(op) if len(out) > before else raw)
    return out


def _rewrite_op(
    op: Doc, targets: Mapping[tuple[str, bytes], dict[str, Any]], n: int, out: list[Change]
) -> bool:
    """Edit one oplog entry in place so it cannot undo a rewrite; record changes in `out`.
    Return False if the entry must be dropped."""
    kind = op.get("op")
    body = op.get("o")
    if kind not in ("i", "u") or not isinstance(body, dict):
        return True
    doc_id = (op.get("o2") or {}).get("_id") if kind == "u" else body.get("_id")
    paths = targets.get((op["ns"], _id_key(doc_id)))
    if not paths:
        return True
    where = f"{op['ns']} {doc_id}"
    if REMOVED in paths:
        out.append(Change("oplog", where, f"op #{n} on a removed document", "kept", "dropped"))
        return False
    if kind == "i" or not any(k.startswith("$") for k in body):
        for path, value in paths.items():
            _set_path(body, path, value)
        what = "insert" if kind == "i" else "replacement"
        out.append(Change("oplog", where, f"op #{n} {what}", "old values", "rewritten values"))
        return True
    if body.get("$v") == 2 or "diff" in body:
        out.append(Change("oplog", where, f"op #{n} diff-format update", "kept", "dropped"))
        return False
    if _rewrite_modifiers(body, paths, where, f"op #{n}", out):
        return True
    out.append(Change("oplog", where, f"op #{n} update", "nothing left to apply", "dropped"))
    return False


def _rewrite_modifiers(
    body: Doc, paths: Mapping[str, Any], where: str, label: str, out: list[Change], coll: str = "oplog"
) -> bool:
    """Edit a `$set`-style update body in place: drop keys on (or inside) rewritten fields, set the
    rewritten values inside keys holding their parents; record Changes (`coll`, `where`, "<label>
    <modifier> <key>"). Return False if no modifier is left."""
    for modifier in [k for k in body if k.startswith("$") and k != "$v"]:
        spec = body[modifier]
        if not isinstance(spec, dict):
            continue
        for key in list(spec):
            for path, value in paths.items():
                if key == path or key.startswith(path + "."):
                    old = spec.pop(key)
                    out.append(Change(coll, where, f"{label} {modifier} {key}", _plain(old), "dropped"))
                    break
                if path.startswith(key + ".") and isinstance(spec[key], dict):
                    inner = path[len(key) + 1 :]
                    _set_path(spec[key], inner, value)
                    out.append(
                        Change(coll, where, f"{label} {modifier} {key}.{inner}", "replayed", _plain(value))
                    )
        if not spec:
            del body[modifier]
    return any(k.startswith("$") and k != "$v" for k in body)


TXNS = "juju/txns.bson"
PENDING_TXN_STATES = (1, 2, 4)
"""mgo/txn states whose ops a resumer may still apply: preparing, prepared, applying."""


def rewrite_txns_stream(src: IO[bytes], dst: IO[bytes], changes: Iterable[Change]) -> list[Change]:
    """Given dump/juju/txns.bson (mgo/txn transactions) and the changes made to the collection files,
    copy it so that a PENDING transaction (state preparing/prepared/applying, which Juju's txn
    resumer completes on start) cannot undo them: in its ops on a rewritten document, update keys on
    rewritten fields are removed (an update left empty stays as `{}`, so the transaction still
    completes) and inserts get the rewritten values. Applied/aborted transactions are never re-run
    and are copied as they are. Only documents whose raw bytes name a rewritten `_id` are decoded.
    Return the changes (collection "juju.txns", doc_id the txn id, field "op #<i> ...")."""
    targets = {(ns.split(".", 1)[1], key): paths for (ns, key), paths in _targets(changes).items()}
    needles = [_txn_needle(key) for _, key in targets]
    out: list[Change] = []
    for raw in _documents(src, TXNS):
        if not any(n is None or n in raw for n in needles):
            dst.write(raw)
            continue
        txn = bson.decode(raw, archive.BSON_CODEC)
        before = len(out)
        if txn.get("s") in PENDING_TXN_STATES:
            _rewrite_txn_ops(txn, targets, out)
        dst.write(bson.encode(txn) if len(out) > before else raw)
    return out


def _txn_needle(id_key: bytes) -> bytes | None:
    """Return the raw BSON element `d: <id>` an mgo/txn op carries for a string _id (a cheap filter),
    or None for other _id types (those documents are always decoded)."""
    doc_id = bson.decode(id_key)["_id"]
    if not isinstance(doc_id, str):
        return None
    value = doc_id.encode("utf-8")
    return b"\x02d\x00" + struct.pack("<i", len(value) + 1) + value + b"\x00"


def _rewrite_txn_ops(
    txn: Doc, targets: Mapping[tuple[str, bytes], dict[str, Any]], out: list[Change]
) -> None:
    """Edit the ops of one pending transaction in place; record changes."""
    for i, op in enumerate(txn.get("o") or []):
        if not isinstance(op, dict):
            continue
        paths = targets.get((str(op.get("c")), _id_key(op.get("d"))))
        if not paths:
            continue
        where, label = str(txn.get("_id")), f"op #{i} {op.get('c')} {op.get('d')}"
        if REMOVED in paths:
            for key in ("u", "i", "r"):
                op.pop(key, None)
            op["a"] = "d-"  # mgo/txn DocMissing: true, the document is gone
            out.append(Change("juju.txns", where, f"{label} on a removed document", "kept", "assert only"))
            continue
        if isinstance(op.get("u"), dict) and not _rewrite_modifiers(
            op["u"], paths, where, label, out, "juju.txns"
        ):
            op["u"] = {}
        if isinstance(op.get("i"), dict):
            for path, value in paths.items():
                _set_path(op["i"], path, value)
            out.append(Change("juju.txns", where, f"{label} insert", "old values", "rewritten values"))


def _set_path(doc: Doc, path: str, value: Any) -> None:
    """Set dotted `path` in doc to a copy of `value`, creating subdocuments."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


