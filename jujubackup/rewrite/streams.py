"""Dump files rewritten document by document (readdress_dump: the collections DUMP_COLLECTIONS names)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import IO

import bson

from jujubackup import archive
from jujubackup.errors import VerifyError
from jujubackup.rewrite.documents import RULES
from jujubackup.rewrite.layout import DUMP_COLLECTIONS, Change, DumpRewrite, ReaddressTarget


def rewrite_collection_stream(
    src: IO[bytes], dst: IO[bytes], path: str, target: ReaddressTarget
) -> list[Change]:
    """Given a dump collection file `path` (one of DUMP_COLLECTIONS, relative to dump/), copy it
    from src to dst document by document applying its rule; unchanged documents are copied byte for
    byte. Return the changes. Raise ValueError for an unknown path, VerifyError for malformed BSON."""
    rule = RULES.get(path)
    if rule is None:
        raise ValueError(f"no re-addressing rule for dump/{path}")
    changes: list[Change] = []
    for raw in _documents(src, path):
        doc = bson.decode(raw, archive.BSON_CODEC)
        before = len(changes)
        rule(doc, target, changes)
        if not doc:
            continue  # removed
        dst.write(bson.encode(doc) if len(changes) > before else raw)
    return changes


def rewrite_collection(data: bytes, path: str, target: ReaddressTarget) -> tuple[bytes, list[Change]]:
    """Bytes form of rewrite_collection_stream: return (new file bytes, changes)."""
    out = io.BytesIO()
    changes = rewrite_collection_stream(io.BytesIO(data), out, path, target)
    return out.getvalue(), changes


def _documents(src: IO[bytes], path: str) -> Iterable[bytes]:
    """Yield raw documents of a dump file; raise VerifyError naming the file if malformed."""
    try:
        yield from archive.iter_bson_documents(src)
    except ValueError as err:
        raise VerifyError(f"dump/{path} is not well-formed BSON: {err}") from err


def readdress_dump(files: Mapping[str, bytes], target: ReaddressTarget) -> DumpRewrite:
    """Given the contents of the dump collection files present (paths relative to dump/, any of
    DUMP_COLLECTIONS), return the rewritten files that changed and every change (in file order)."""
    out: dict[str, bytes] = {}
    changes: list[Change] = []
    for path in DUMP_COLLECTIONS:
        if path not in files:
            continue
        data, file_changes = rewrite_collection(files[path], path, target)
        if file_changes:
            out[path] = data
            changes.extend(file_changes)
    return DumpRewrite(out, tuple(changes))


