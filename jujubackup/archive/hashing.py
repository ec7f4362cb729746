"""Hashing streams: SHA-256 and Juju's SHA-1/base64 of an archive while it is read or written."""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import threading
from typing import IO, Any

from jujubackup.archive.layout import CHUNK, ArchiveDigest

HASH_QUEUE = 16  # chunks read but not yet hashed by a threaded _HashingReader (16 MiB at most)


class _HashingReader:
    """A read-only stream that hashes (SHA-256, and SHA-1 unless `sha1` is False: archive members
    only need SHA-256 for the manifest) and counts every byte read through it.

    `threaded`: each digest is computed by a thread of its own (hashlib releases the GIL), so a
    reader that inflates and parses what it reads is not held up by them, nor is one digest by the
    other (verifying a 1 GiB archive on 2 CPUs: 2.4 s on one thread, 1.4 s with the archive's
    digests on another). Call close() (or digest()) when done; at most HASH_QUEUE chunks wait for
    each thread (the threads share the chunks: bytes are immutable)."""

    def __init__(self, raw: IO[bytes] | Any, *, sha1: bool = True, threaded: bool = False) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1()
        self.with_sha1 = sha1
        self.size = 0
        self._queues: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []
        if threaded:
            for digest in (self.sha256, self.sha1) if sha1 else (self.sha256,):
                q: queue.Queue[bytes | None] = queue.Queue(HASH_QUEUE)
                thread = threading.Thread(target=_hash_queued, args=(q, digest), name="jujubackup-hash",
                                          daemon=True)
                thread.start()
                self._queues.append(q)
                self._threads.append(thread)

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self._hash(data)
        return data

    def read_view(self, n: int = CHUNK) -> memoryview | bytes:
        """Like read, without a copy when the stream underneath offers read_view."""
        read_view = getattr(self.raw, "read_view", None)
        data: memoryview | bytes = read_view(n) if read_view is not None else self.raw.read(n)
        self._hash(data)
        return data

    def _hash(self, data: memoryview | bytes) -> None:
        self.size += len(data)
        if self._queues:
            if data:  # a view may be of a buffer its stream reuses: the threads get a copy
                chunk = data if isinstance(data, bytes) else bytes(data)
                for q in self._queues:
                    q.put(chunk)
            return
        self.sha256.update(data)
        if self.with_sha1:
            self.sha1.update(data)

    def close(self) -> None:
        """Wait for the hashing threads to hash what was read, and stop them (no-op unthreaded)."""
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join()
        self._queues = []
        self._threads = []

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read the rest of the stream so the digests cover every byte."""
        while self.read_view(CHUNK):
            pass

    def digest(self) -> ArchiveDigest:
        """The digests so far (sha1_b64 is "" when SHA-1 was not computed). Reading after this
        hashes unthreaded."""
        self.close()
        sha1 = base64.b64encode(self.sha1.digest()).decode("ascii") if self.with_sha1 else ""
        return ArchiveDigest(self.sha256.hexdigest(), sha1, self.size)


def _hash_queued(chunks: queue.Queue[bytes | None], digest: Any) -> None:
    """A hashing thread: update `digest` with each queued chunk until None."""
    while (data := chunks.get()) is not None:
        digest.update(data)


class _SourceGuard:
    """Wraps a stream and remembers whether reading it failed, so a consumer can tell its own
    parse errors (a bad member) from errors of the stream underneath (a broken archive)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.failed = False

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self.raw.read(n)
        except BaseException:
            self.failed = True
            raise
        return data

    def read_view(self, n: int = CHUNK) -> memoryview | bytes:
        """Like read, without a copy when the stream underneath offers read_view."""
        read_view = getattr(self.raw, "read_view", None)
        if read_view is None:
            return self.read(n)
        try:
            data: memoryview | bytes = read_view(n)
        except BaseException:
            self.failed = True
            raise
        return data

    def readable(self) -> bool:
        return True


class _HashingWriter:
    """A write-only stream that hashes (SHA-256, SHA-1) and counts every byte written through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha256.update(data)
        self.sha1.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def digest(self) -> ArchiveDigest:
        return ArchiveDigest(
            self.sha256.hexdigest(), base64.b64encode(self.sha1.digest()).decode("ascii"), self.size
        )


def digest_file(path: str | os.PathLike[str]) -> ArchiveDigest:
    """Given a file path, return its SHA-256 hex, SHA-1 base64 (Juju's Checksum) and size."""
    with open(path, "rb") as raw:
        reader = _HashingReader(raw)
        reader.drain()
        return reader.digest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes] | None = None) -> tuple[int, str]:
    """Copy `src` to `dst` (or discard) in chunks; return (bytes, sha256 hex)."""
    sha = hashlib.sha256()
    total = 0
    while chunk := src.read(CHUNK):
        sha.update(chunk)
        total += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return total, sha.hexdigest()


