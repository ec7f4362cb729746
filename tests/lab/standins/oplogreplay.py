"""`mongorestore --oplogReplay`: which oplog entries are applied, in which order and shape. Test code,
never shipped.

As mongo-tools 100.9.4 does it (mongorestore/oplog.go RestoreOplog, HandleOp, HandleNonTxnOp,
HandleTxnOp, filterUUIDs; common/txn/meta.go NewMeta; common/txn/buffer.go; the same in 100.6.1
but for the config namespaces skipped):
- skipped: `n` entries, `config.*` namespaces other than the ones mongo-tools keeps
  (common/dumprestore/config.go ConfigCollectionsToKeep), `startIndexBuild`/`abortIndexBuild`.
- a transaction entry (op `c` with `lsid` and `txnNumber` whose `o` holds `applyOps`,
  `commitTransaction` or `abortTransaction`) is buffered by (lsid, txnNumber): the ops of its
  `applyOps` (each given the entry's ts/t/h) are applied when the transaction commits - at a
  `commitTransaction` entry, or at an `applyOps` entry with neither `prepare` nor `partialTxn` (a
  single-entry transaction, or the last of a partialTxn chain); an `abortTransaction` entry drops
  them; a transaction not committed by the end of the oplog is never applied.
- any other `applyOps` command entry: each nested op is handled as a top-level one (recursively).
- other commands must be ones mongo-tools knows (knownCommands), else the replay fails.
- each op is sent alone, `ui` removed (no --preserveUUID), in the server's `applyOps` command.
Not imitated: index commands are applied as they are (mongo-tools rebuilds them from its catalog at
the end); the lab's oplogs have none. The lab's own oplog never holds `local.*` writes (a real one
does not either); those are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import bson

KNOWN_COMMANDS = {
    "renameCollection", "dropDatabase", "applyOps", "dbCheck", "create", "convertToCapped", "emptycapped",
    "drop", "createIndexes", "deleteIndex", "deleteIndexes", "dropIndex", "dropIndexes", "collMod",
    "startIndexBuild", "abortIndexBuild", "commitIndexBuild",
}
CONFIG_COLLECTIONS_TO_KEEP = ("chunks", "collections", "databases", "settings", "shards", "tags", "version")
"""mongo-tools 100.9.4 common/dumprestore/config.go ConfigCollectionsToKeep."""


class ReplayError(Exception):
    """The replay stops: mongo-tools' message."""


def replay(entries: Iterable[dict]) -> Iterator[dict]:
    """Given the decoded entries of oplog.bson in order, yield each op mongorestore sends to the
    server's applyOps (alone, in this order). Raise ReplayError where mongo-tools fails."""
    buffered: dict[tuple[bytes, int], list[dict]] = {}
    for entry in entries:
        yield from _handle(entry, buffered)


def _handle(op: dict, buffered: dict[tuple[bytes, int], list[dict]]) -> Iterator[dict]:
    """HandleOp: skip, buffer (transactions) or apply one entry."""
    ns = str(op.get("ns", ""))
    if ns.startswith("config.") and ns[len("config."):] not in CONFIG_COLLECTIONS_TO_KEEP:
        return
    if ns.startswith("local.") or op.get("op") == "n":
        return
    body = op.get("o") if isinstance(op.get("o"), dict) else {}
    if op.get("op") == "c" and next(iter(body), None) in ("startIndexBuild", "abortIndexBuild"):
        return
    key = _txn_key(op, body)
    if key is None:
        yield from _non_txn(op, buffered)
        return
    if "applyOps" in body and "commitTransaction" not in body and "abortTransaction" not in body:
        ops = body["applyOps"]
        if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
            raise ReplayError("error extracting transaction ops: applyOps field: not a BSON array")
        stamp = {k: op[k] for k in ("ts", "t", "h") if k in op}
        buffered.setdefault(key, []).extend({**o, **stamp} for o in ops)
    else:
        buffered.setdefault(key, [])
    if "abortTransaction" in body:
        buffered.pop(key, None)
        return
    commit = "commitTransaction" in body or not (body.get("prepare") or body.get("partialTxn"))
    if commit:
        for inner in buffered.pop(key, []):
            yield from _non_txn(inner, buffered)


def _txn_key(op: dict, body: dict) -> tuple[bytes, int] | None:
    """txn.NewMeta: the transaction an entry belongs to, or None for a non-transaction entry."""
    if op.get("op") != "c" or op.get("lsid") is None or op.get("txnNumber") is None:
        return None
    if not any(k in body for k in ("applyOps", "commitTransaction", "abortTransaction")):
        return None
    return bson.encode(op["lsid"]), int(op["txnNumber"])


def _non_txn(op: dict, buffered: dict[tuple[bytes, int], list[dict]]) -> Iterator[dict]:
    """HandleNonTxnOp: nested applyOps handled op by op, other commands checked, `ui` removed."""
    op = {k: v for k, v in op.items() if k != "ui"}
    if op.get("op") == "c":
        body = op.get("o")
        if not isinstance(body, dict) or not body:
            raise ReplayError(f"error applying oplog: Empty object value for op: {op}")
        name = next(iter(body))
        if name not in KNOWN_COMMANDS:
            raise ReplayError(f"error applying oplog: unknown oplog command name {name}: {op}")
        if name == "applyOps":
            nested = body["applyOps"]
            if not isinstance(nested, list):
                raise ReplayError(f"error applying oplog: unknown format for applyOps: {body}")
            for inner in nested:
                yield from _handle(inner, buffered)
            return
    yield op
