"""Pieces shared by download and upload: rates, throttling, hashing sinks/sources, resume checks.

Everything streams in 1 MiB chunks, so memory stays constant whatever the archive size.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import hashlib
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jujubackup import scripts
from jujubackup.errors import RefusedError, UsageError
from jujubackup.host.base import Host
from jujubackup.remote_values import remote_bool, remote_int, remote_sha256

CHUNK = 1 << 20
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)(i?[bB])?(?:/s)?\s*$")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_rate(text: str | None) -> int | None:
    """Given `--bwlimit` text (bytes/s; K, M, G suffixes are KiB/MiB/GiB per second), return bytes/s.

    None or "0" mean unlimited (None). Raise UsageError for anything else.
    """
    if text is None:
        return None
    match = _RATE.match(text)
    if not match:
        raise UsageError(f"bad rate {text!r}", hint="give bytes per second, e.g. 500K, 20M or 1G")
    rate = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    return rate or None


class Throttle:
    """Sleep just enough that `rate` bytes/s is not exceeded (None: never sleeps)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.moved = 0

    @property
    def limited(self) -> bool:
        """True when a rate is set."""
        return bool(self.rate)

    def __call__(self, nbytes: int) -> None:
        if not self.rate:
            return
        self.moved += nbytes
        ahead = self.moved / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


WRITEBACK_EVERY = 32 << 20
"""HashingSink asks the kernel to start writing the file out after every this many bytes."""


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Return libc's sync_file_range (Linux), or None where there is none (e.g. macOS)."""
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing `length` bytes at `offset` of `fd` to disk, without waiting
    (so the final fsync of a big download has little left to do). A no-op where unsupported."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def hash_file_range(fd: int, buffer: bytearray, hasher: Any, start: int, end: int,
                    after_chunk: Callable[[int, int], None] | None = None) -> int:
    """Given an open file, feed its bytes from `start` to `end` to `hasher`, read into `buffer` with
    pread (the file's offset does not move); call after_chunk(offset reached, bytes) after each chunk.
    Return the offset reached: `end`, or less where the file ends sooner. Raise OSError if the file
    cannot be read."""
    view = memoryview(buffer)
    while start < end:
        got = os.preadv(fd, [view[: min(len(buffer), end - start)]], start)
        if got == 0:
            break
        hasher.update(view[:got])
        start += got
        if after_chunk is not None:
            after_chunk(start, got)
    return start


class HashingSink:
    """A write-only stream that writes to `raw`, hashes with SHA-256 and applies a Throttle; every
    WRITEBACK_EVERY bytes it starts the kernel's writeback of what was written (when raw is a file).

    Unthrottled over a regular file opened for reading too (open_private(readable=True)), it is a
    host.base.DirectSink: the OpenSSH client may write into the file itself, and the sink hashes
    the file behind it as it grows (read back from the page cache: a read instead of a pipe copy, a
    Python write and a copy into the page cache)."""

    def __init__(self, raw: IO[bytes], hasher: Any, throttle: Throttle) -> None:
        self.raw = raw
        self.hasher = hasher
        self.throttle = throttle
        self.pending = 0
        self.hashed_to = 0
        self.buffer: bytearray | None = None

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """Return (the file's descriptor, catch_up) for a writer of its own (host.base.DirectSink),
        or None when throttled or `raw` is not a regular file this process can read back."""
        if self.throttle.limited:
            return None
        try:
            fd = self.raw.fileno()
            self.raw.flush()
            info = os.fstat(fd)
            readable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
        except (OSError, ValueError):  # io.UnsupportedOperation: no file behind it
            return None
        if not stat.S_ISREG(info.st_mode) or not readable:
            return None
        self.hashed_to = info.st_size  # what is already there was hashed by whoever wrote it
        self.pending = 0
        self.buffer = bytearray(CHUNK)
        return fd, self.catch_up

    def catch_up(self) -> None:
        """Hash the bytes another writer appended to the file since the last call (up to its size
        now: a write's bytes are in the page cache before the size covers them), starting their
        writeback every WRITEBACK_EVERY bytes. Raise OSError if the file cannot be read."""
        assert self.buffer is not None, "catch_up before direct_file"
        fd = self.raw.fileno()

        def write_back(upto: int, got: int) -> None:
            self.pending += got
            if self.pending >= WRITEBACK_EVERY:
                start_writeback(fd, upto - self.pending, self.pending)
                self.pending = 0

        # a file cut short meanwhile stops the hashing early: the size check before the rename refuses it
        self.hashed_to = hash_file_range(fd, self.buffer, self.hasher, self.hashed_to, os.fstat(fd).st_size,
                                         write_back)

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.hasher.update(data)
        self.throttle(len(data))
        self.pending += len(data)
        if self.pending >= WRITEBACK_EVERY:
            self._writeback()
        return len(data)

    def _writeback(self) -> None:
        """Start the writeback of the bytes written since the last time (not for a non-file)."""
        try:
            self.raw.flush()
            end = self.raw.tell()
            start_writeback(self.raw.fileno(), end - self.pending, self.pending)
        except (OSError, ValueError):  # io.UnsupportedOperation: not a file
            pass
        self.pending = 0


class FileSource:
    """The rest of an open file for Host.put: `read` where each chunk goes through this process
    (paramiko, a small file), else the file itself (host.base.DirectFile: `ssh host cmd < file`,
    no copy through this process, nothing to check meanwhile)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw

    def read(self, size: int = CHUNK) -> bytes:
        return self.raw.read(size)

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """The open file, read from its current offset (host.base.DirectFile)."""
        return self.raw.fileno(), _nothing_to_check


def _nothing_to_check() -> None:
    pass


class HashingSource:
    """A read-only stream over the open file `raw`, from its current offset, that feeds what is sent
    to `hasher`. Through `read` each chunk is hashed as it is handed out; as a host.base.DirectFile
    (`ssh` reads the file itself: no copy through this process and no pipe) the bytes `ssh` has read
    so far, up to the shared file offset, are hashed behind it from the page cache."""

    def __init__(self, raw: IO[bytes], hasher: Any) -> None:
        self.raw = raw
        self.hasher = hasher
        self.hashed_to = 0
        self.buffer: bytearray | None = None

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.hasher.update(data)
        return data

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """Return (the file's descriptor, catch_up) for a reader of its own (host.base.DirectFile),
        or None when `raw` is not a regular file."""
        try:
            fd = self.raw.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            self.hashed_to = os.lseek(fd, 0, os.SEEK_CUR)
        except (OSError, ValueError):  # io.UnsupportedOperation: no file behind it
            return None
        self.buffer = bytearray(CHUNK)
        return fd, self.catch_up

    def catch_up(self) -> None:
        """Hash the bytes the other reader took since the last call (up to the shared offset now).
        Raise OSError if the file cannot be read."""
        assert self.buffer is not None, "catch_up before direct_file"
        fd = self.raw.fileno()
        # a file cut short meanwhile stops the hashing early: the digest then differs from the verified one
        self.hashed_to = hash_file_range(fd, self.buffer, self.hasher, self.hashed_to,
                                         os.lseek(fd, 0, os.SEEK_CUR))


def hash_prefix(path: Path, length: int) -> Any:
    """Given a local file and a length, return a sha256 object fed with its first `length` bytes.

    Raise ValueError if the file is shorter.
    """
    hasher = hashlib.sha256()
    remaining = length
    with path.open("rb") as fh:
        while remaining:
            data = fh.read(min(CHUNK, remaining))
            if not data:
                raise ValueError(f"{path} is shorter than {length} bytes")
            hasher.update(data)
            remaining -= len(data)
    return hasher


@dataclass(frozen=True)
class RemoteFile:
    """What transfer-stat saw: existence, size, SHA-256 of the hashed prefix ('' if none)."""

    exists: bool
    size: int
    sha256: str


def remote_stat(host: Host, path: str, prefix: int = 0) -> RemoteFile:
    """Given a host and a path, return its RemoteFile; hash its first `prefix` bytes (-1: all).
    Raise HostileOutputError (exit 8) if transfer-stat printed something it never prints."""
    doc = host.run("transfer-stat", scripts.render("transfer-stat", path=path, prefix=prefix)).json()
    return remote_file(doc, "transfer-stat", host.name)


def remote_file(doc: Any, script: str, host: str = "") -> RemoteFile:
    """Given a {"exists", "size", "sha256"} document a remote script printed, return the RemoteFile.
    Raise HostileOutputError (exit 8) unless exists is a boolean, size an integer in 0..2^63-1 and
    sha256 empty or 64 lowercase hex digits."""
    if not isinstance(doc, dict):
        doc = {}
    return RemoteFile(remote_bool(doc.get("exists"), f"{script}'s exists", host=host),
                      remote_int(doc.get("size"), f"{script}'s size", host=host),
                      remote_sha256(doc.get("sha256"), f"{script}'s sha256", host=host, empty=True))


def remote_remove(host: Host, path: str) -> None:
    """Delete a remote staging file (missing is fine)."""
    host.run("transfer-remove", scripts.render("transfer-remove", path=path))


def open_private(path: Path, *, append: bool, readable: bool = False) -> IO[bytes]:
    """Open `path` for (appending) binary writing (its descriptor readable too if `readable`: for
    HashingSink.direct_file), creating it 0600 (and forcing 0600 if it existed),
    never through a symbolic link (O_NOFOLLOW: one planted at a `.part` path would aim the write
    anywhere the operator can write) and only as a regular file (O_NONBLOCK: a planted FIFO fails
    instead of blocking). Raise RefusedError (exit 6) for a link or a non-regular file; other
    OSErrors (no space, no such directory) are raised as they are."""
    flags = (os.O_RDWR if readable else os.O_WRONLY) | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    flags |= os.O_APPEND if append else os.O_TRUNC
    refused = RefusedError(
        f"{path} is a symbolic link or not a regular file: not writing through it",
        hint="remove it (jujubackup never makes one there), or choose another FILE or --dir",
    )
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise refused from err
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise refused
    os.set_blocking(fd, True)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab" if append else "wb")
