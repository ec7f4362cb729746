"""BSON dump files read document by document, checked in a process pool when big."""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import IO, Any

import bson

from jujubackup.alloc import reuse_big_buffers
from jujubackup.archive.layout import _INT32, BSON_CODEC, CHUNK, MAX_BSON_DOC


def iter_bson_blocks(stream: IO[bytes], *, max_doc: int = MAX_BSON_DOC) -> Iterator[tuple[int, bytes]]:
    """Given a stream of concatenated BSON documents (a mongodump .bson file), yield (offset, block)
    where each block holds whole documents (about CHUNK bytes, more for a bigger document).
    Only the length prefixes and trailing NULs are checked here (cheaply, in large reads).
    Raise ValueError naming the byte offset on a bad length or truncation."""
    buf = b""
    offset = 0
    while True:
        chunk = stream.read(_next_read(buf, max_doc))
        buf = buf + chunk if buf else chunk
        pos = _whole_documents(buf, offset, max_doc)
        if pos:
            yield offset, buf[:pos]  # the whole buffer (no copy) when it ends with a document
            offset += pos
            buf = buf[pos:]
        if not chunk:
            break
    if len(buf) >= 4:
        length = int.from_bytes(buf[:4], "little", signed=True)
        raise ValueError(f"document at byte {offset} is truncated ({len(buf)} of {length} bytes)")
    if buf:
        raise ValueError(f"truncated length prefix at byte {offset}")


def _next_read(buf: bytes, max_doc: int) -> int:
    """How much to read next: CHUNK, or exactly the rest of a document that is bigger than what is
    buffered and either big itself (> CHUNK) or far from complete. A big document is then joined
    once and yielded without a copy (reading past its end would copy it twice more, and allocate)."""
    if len(buf) >= 4:
        (length,) = _INT32.unpack_from(buf, 0)
        if len(buf) < length <= max_doc and (length > CHUNK or length - len(buf) > CHUNK // 4):
            return length - len(buf)
    return CHUNK


def _whole_documents(buf: bytes, offset: int, max_doc: int) -> int:
    """Return the length of the longest prefix of `buf` made of whole documents. Raise ValueError
    for a length outside 5..max_doc or a document not ending in NUL."""
    pos = 0
    size = len(buf)
    while size - pos >= 4:
        (length,) = _INT32.unpack_from(buf, pos)
        if length < 5 or length > max_doc:
            raise ValueError(f"bad document length {length} at byte {offset + pos}")
        if pos + length > size:
            break
        if buf[pos + length - 1] != 0:
            raise ValueError(f"document at byte {offset + pos} does not end with a NUL byte")
        pos += length
    return pos


def iter_bson_documents(stream: IO[bytes], *, max_doc: int = MAX_BSON_DOC) -> Iterator[bytes]:
    """Given a stream of concatenated BSON documents, yield each raw document (bytes, length prefix
    included), reading in large blocks. Raise ValueError on a bad length or truncation."""
    for _offset, block in iter_bson_blocks(stream, max_doc=max_doc):
        pos = 0
        while pos < len(block):
            (length,) = _INT32.unpack_from(block, pos)
            yield block[pos : pos + length]
            pos += length


def check_bson_stream(
    stream: IO[bytes],
    on_doc: Callable[[dict[str, Any]], None] | None = None,
    *,
    pool: Executor | None = None,
) -> int:
    """Given a .bson stream, decode every document (block by block, constant memory) and return the
    document count; call `on_doc` with each decoded document if given. Raise ValueError naming the
    first malformed document. With a process `pool` (and no `on_doc`) the blocks are decoded in
    the pool's workers (the same full decode: decoding holds the GIL and is most of verify's time)."""
    if pool is not None and on_doc is None:
        return _check_bson_in_pool(stream, pool)
    count = 0
    for _offset, block in iter_bson_blocks(stream):
        try:
            docs = bson.decode_all(block, BSON_CODEC)
        except Exception as err:
            raise ValueError(_first_bad_document(block, count, err)) from err
        if on_doc is not None:
            for doc in docs:
                on_doc(doc)
        count += len(docs)
    return count


BSON_POOL_MIN = 64 * 1024 * 1024
"""A dump file at least this big is decoded in worker processes when the machine has >1 CPU."""
BSON_POOL_INFLIGHT = 8
"""Blocks (about CHUNK bytes each) handed to the pool and not yet checked: bounds the memory."""


def _decode_count(block: bytes) -> int | str:
    """Given whole BSON documents, fully decode them; return their count, or the error text.
    (Runs in a worker process: returns rather than raises so nothing unpicklable crosses back.)"""
    try:
        return len(bson.decode_all(block, BSON_CODEC))
    except Exception as err:
        return str(err) or type(err).__name__


def _check_bson_in_pool(stream: IO[bytes], pool: Executor) -> int:
    """check_bson_stream's pool path: submit blocks in order, settle them in order (a block whose
    worker died is decoded here). Raise ValueError naming the first malformed document."""
    count = 0
    pending: deque[tuple[bytes, Future[int | str]]] = deque()

    def settle() -> None:
        nonlocal count
        block, future = pending.popleft()
        try:
            result = future.result()
        except Exception:  # a broken pool: decode here, the check stays the same
            result = _decode_count(block)
        if isinstance(result, str):
            for _block, other in pending:
                other.cancel()
            raise ValueError(_first_bad_document(block, count, ValueError(result)))
        count += result

    for _offset, block in iter_bson_blocks(stream):
        pending.append((block, pool.submit(_decode_count, block)))
        if len(pending) > BSON_POOL_INFLIGHT:
            settle()
    while pending:
        settle()
    return count


def bson_pool() -> Executor | None:
    """Return a process pool for decoding big dump files (spawned workers: safe from a threaded
    caller such as upload), or None on a single-CPU machine."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cpus < 2:
        return None
    return ProcessPoolExecutor(max_workers=cpus, mp_context=multiprocessing.get_context("spawn"),
                               initializer=reuse_big_buffers)


def _first_bad_document(block: bytes, first: int, err: Exception) -> str:
    """Return a message naming the first document of `block` that does not decode."""
    pos = 0
    n = first
    while pos < len(block):
        (length,) = _INT32.unpack_from(block, pos)
        n += 1
        try:
            bson.decode(block[pos : pos + length], BSON_CODEC)
        except Exception as doc_err:
            return f"document {n} does not decode: {doc_err}"
        pos += length
    return f"documents do not decode: {err}"


