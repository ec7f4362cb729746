"""oplog.bson (applyOps and transaction entries too) and txns rewritten so a replay does not undo the
re-addressing."""

from __future__ import annotations

import copy
import struct
from collections.abc import Iterable, Mapping
from typing import IO, Any

import bson

from jujubackup import archive
from jujubackup.rewrite.documents import REMOVED, RULES
from jujubackup.rewrite.layout import OPLOG, Change, Doc, ReaddressTarget, _plain
from jujubackup.rewrite.streams import _documents


def _id_key(doc_id: Any) -> bytes:
    """Return a hashable, type-exact key for a document _id."""
    return bson.encode({"_id": doc_id})


def _targets(changes: Iterable[Change]) -> dict[tuple[str, bytes], dict[str, Any]]:
    """Group changes of dump collections by (namespace, _id) -> {path: new value}."""
    return _by_document(changes, new=True)


def _by_document(changes: Iterable[Change], *, new: bool) -> dict[tuple[str, bytes], dict[str, Any]]:
    """Group changes of dump collections by (namespace, _id) -> {path: new (else old) value}."""
    out: dict[tuple[str, bytes], dict[str, Any]] = {}
    for c in changes:
        if c.collection.count(".") >= 1 and c.collection not in ("agent.conf", "oplog"):
            out.setdefault((c.collection, _id_key(c.doc_id)), {})[c.field] = c.new if new else c.old
    return out


NAMESPACE_RULES: dict[str, str] = {"juju." + p.split("/", 1)[1].removesuffix(".bson"): p for p in RULES}
"""Oplog namespace (`juju.machines`) -> the dump path whose rule (documents.RULES) governs it."""


def rewrite_oplog_stream(
    src: IO[bytes], dst: IO[bytes], changes: Iterable[Change], target: ReaddressTarget | None = None
) -> list[Change]:
    """Given dump/oplog.bson, the changes made to the collection files and (normally) the target they
    were made for, copy the oplog so that replaying it cannot undo them (see the package docstring);
    return what was changed in the oplog (collection "oplog", doc_id "<ns> <_id>", field "op #<n>
    <what>", n counting top-level entries from 0, "op #<n> applyOps[<i>]" for a nested op).

    `applyOps` entries (MongoDB transactions: single, partialTxn chains and prepared ones; and plain
    applyOps commands) are rewritten op by op, nested ones too; the entry itself is always kept (an
    empty `applyOps` array when every op in it went) so a transaction's chain and commit stay whole.
    With `target`, inserts and replacements are re-addressed by the collection's own rule (the same
    function the dump files went through), so documents that exist only in the oplog are covered too.
    Raise VerifyError for malformed BSON."""
    changes = list(changes)
    state = _OplogRewrite(_targets(changes), target, _by_document(changes, new=False))
    out: list[Change] = []
    for n, raw in enumerate(_documents(src, OPLOG)):
        op = bson.decode(raw, archive.BSON_CODEC)
        before = len(out)
        if state.entry(op, f"op #{n}", out):
            dst.write(bson.encode(op) if len(out) > before else raw)
    return out


class _OplogRewrite:
    """Rewrites oplog entries in place; `targets` grows as inserts in the oplog are re-addressed
    (their later updates must not undo that either)."""

    def __init__(self, targets: dict[tuple[str, bytes], dict[str, Any]], target: ReaddressTarget | None,
                 before: dict[tuple[str, bytes], dict[str, Any]] | None = None):
        self.targets = targets
        self.target = target
        # what the rules saw before they changed a document (the dump's, or an earlier op's), so a
        # probe of a later update is judged as that document: a `$set` of `hasvote` on a controller
        # the dump's `jobs` made one of (demoted there) is the demoted controller's, though the
        # update itself names no `jobs`
        self.before = before if before is not None else {}

    def entry(self, op: Doc, label: str, out: list[Change]) -> bool:
        """Edit one oplog entry (or one op nested in an applyOps) in place; record changes in `out`.
        Return False if it must be dropped."""
        kind, body = op.get("op"), op.get("o")
        if not isinstance(body, dict):
            return True
        if kind == "c" and isinstance(body.get("applyOps"), list):
            ops = body["applyOps"]
            kept = [o for i, o in enumerate(ops)
                    if not isinstance(o, dict) or self.entry(o, f"{label} applyOps[{i}]", out)]
            if len(kept) != len(ops):
                body["applyOps"] = kept
            return True
        ns = op.get("ns")
        if kind not in ("i", "u") or not isinstance(ns, str):
            return True
        doc_id = (op.get("o2") or {}).get("_id") if kind == "u" else body.get("_id")
        where = f"{ns} {doc_id}"
        if kind == "i" or not any(k.startswith("$") for k in body):
            return self._whole(op, ns, doc_id, where, label, out)
        key = (ns, _id_key(doc_id))
        paths = self.targets.get(key) or {}
        if REMOVED in paths:
            out.append(Change("oplog", where, f"{label} on a removed document", "kept", "dropped"))
            return False
        if isinstance(body.get("diff"), dict):
            if not paths:
                return True
            _rewrite_diff(body["diff"], paths, "", where, f"{label} diff", out)
            left = bool(body["diff"])
        else:
            left = _rewrite_modifiers(body, paths, where, label, out) if paths else True
            left = left and self._by_rule(body, ns, doc_id, where, label, out)
            if REMOVED in self.targets.get(key, {}):
                out.append(Change("oplog", where, f"{label} update of a removed document", "kept", "dropped"))
                return False
        if not left:
            out.append(Change("oplog", where, f"{label} update", "nothing left to apply", "dropped"))
        return left

    def _by_rule(self, body: Doc, ns: str, doc_id: Any, where: str, label: str, out: list[Change]) -> bool:
        """Run the collection's rule over a probe document holding what a `$set`/`$unset` update
        writes (unset paths as null): a key the rule would rewrite gets the rule's value (an unset one
        becomes a set), so an update cannot bring back what the rule owns even where the dump's
        document already had the rule's value (no change recorded) or was not yet one the rule
        changes (a machine made a controller during the dump); a key inside a field the rule rewrites
        goes. Return whether a modifier is left; a document the rule removes is marked REMOVED in
        `targets` (the update must go: applyOps would upsert it back)."""
        rule = RULES.get(NAMESPACE_RULES.get(ns, ""))
        keys = [(m, k) for m in ("$set", "$unset") if isinstance(body.get(m), dict) for k in body[m]]
        if self.target is None or rule is None or not keys:
            return any(k.startswith("$") and k != "$v" for k in body)
        probe: Doc = {"_id": doc_id}
        for path, old in self.before.get((ns, _id_key(doc_id)), {}).items():
            if path != REMOVED:
                _set_path(probe, path, copy.deepcopy(old))
        for modifier, key in keys:
            _set_path(probe, key, body[modifier][key] if modifier == "$set" else None)
        found: list[Change] = []
        rule(probe, self.target, found)
        if not probe:
            self.targets[(ns, _id_key(doc_id))] = {REMOVED: None}
            return False
        for c in found:
            self.before.setdefault((ns, _id_key(doc_id)), {}).setdefault(c.field, c.old)
        owned = [c.field for c in found]
        for modifier, key in keys:
            if any(key.startswith(f + ".") for f in owned):  # inside a rewritten field: ours stays
                old = _plain(body[modifier].pop(key))
                out.append(Change("oplog", where, f"{label} {modifier} {key}", old, "dropped"))
            elif any(f == key or f.startswith(key + ".") for f in owned):
                old, new = body[modifier].pop(key), _get_path(probe, key)
                body.setdefault("$set", {})[key] = new
                out.append(Change("oplog", where, f"{label} {modifier} {key}", _plain(old), _plain(new)))
        for modifier in ("$set", "$unset"):
            if modifier in body and not body[modifier]:
                del body[modifier]
        return any(k.startswith("$") and k != "$v" for k in body)

    def _whole(self, op: Doc, ns: str, doc_id: Any, where: str, label: str, out: list[Change]) -> bool:
        """An insert or a replacement: the collection's rule re-addresses the document it carries (else,
        without a target, the changed paths of the dump's document are set). Return False to drop."""
        body, key = op["o"], (ns, _id_key(doc_id))
        what = "insert" if op["op"] == "i" else "replacement"
        rule = RULES.get(NAMESPACE_RULES.get(ns, ""))
        if self.target is None or rule is None:
            paths = self.targets.get(key)
            if not paths:
                return True
            if REMOVED in paths:
                out.append(Change("oplog", where, f"{label} on a removed document", "kept", "dropped"))
                return False
            for path, value in paths.items():
                _set_path(body, path, value)
            out.append(Change("oplog", where, f"{label} {what}", "old values", "rewritten values"))
            return True
        had_id = "_id" in body
        if not had_id:
            body["_id"] = doc_id  # a replacement may omit it; the rules read it
        found: list[Change] = []
        rule(body, self.target, found)
        if not body:  # the rule removes this document (another controller's node)
            self.targets[key] = {REMOVED: None}
            out.append(Change("oplog", where, f"{label} {what} of a removed document", "kept", "dropped"))
            return False
        if not had_id:
            del body["_id"]
        for c in found:
            self.targets.setdefault(key, {})[c.field] = c.new
            self.before.setdefault(key, {}).setdefault(c.field, c.old)
            out.append(Change("oplog", where, f"{label} {what} {c.field}", c.old, c.new, c.label))
        return True


def _rewrite_diff(diff: Doc, paths: Mapping[str, Any], prefix: str, where: str, label: str,
                  out: list[Change]) -> None:
    """Edit a `$v: 2` update diff in place (MongoDB 5.0+ writes these; `u` updated, `i` inserted,
    `d` deleted fields, `s<field>` a subdocument's own diff): fields on or inside a rewritten path go,
    a field holding a parent of one gets the rewritten value set inside it; an emptied part goes."""
    for section in ("u", "i", "d"):
        spec = diff.get(section)
        if not isinstance(spec, dict):
            continue
        for key in list(spec):
            full = prefix + key
            if any(full == p or full.startswith(p + ".") for p in paths):
                old = _plain(spec.pop(key))
                out.append(Change("oplog", where, f"{label} {section} {full}", old, "dropped"))
                continue
            for path, value in paths.items():
                if section != "d" and path.startswith(full + ".") and isinstance(spec[key], dict):
                    _set_path(spec[key], path[len(full) + 1:], value)
                    out.append(Change("oplog", where, f"{label} {section} {path}", "replayed", _plain(value)))
        if not spec:
            del diff[section]
    for key in [k for k in diff if k.startswith("s") and isinstance(diff[k], dict)]:
        full = prefix + key[1:]
        if any(full == p or full.startswith(p + ".") for p in paths):
            out.append(Change("oplog", where, f"{label} {key}", "subdocument diff", "dropped"))
            del diff[key]
        elif any(p.startswith(full + ".") for p in paths) and not diff[key].get("a"):
            _rewrite_diff(diff[key], paths, full + ".", where, label, out)
            if not diff[key]:
                del diff[key]


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


def _get_path(doc: Doc, path: str) -> Any:
    """Return the value at dotted `path` in doc (None where it is missing)."""
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set_path(doc: Doc, path: str, value: Any) -> None:
    """Set dotted `path` in doc to a copy of `value`, creating subdocuments."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


