"""The `juju-backup/` archive (DESIGN.md §4): inspect, verify, read, rewrite, extract safely. PURE.

Local file I/O only (no network). Every function streams: the outer `.tar.gz` is read once through
`tarstream` (zlib's gzip framing checks the CRC and length; tar headers are parsed by `tarfile`; a
member's data is read straight from the stream), `root.tar` is read as a nested stream, dump files
are read document by document. Memory stays constant whatever the archive size.

Layout (paths below are relative to the top folder `juju-backup/`):
    metadata.json   Juju metadata (FormatVersion 0 or 1; see metadata.py)
    root.tar        uncompressed tar of state files, names without the leading "/"
    dump/           mongodump output: <db>/<coll>.bson + <coll>.metadata.json, oplog.bson
    manifest.json   ours (absent in Juju's archives): {"format-version": 1, "tool": "jujubackup <ver>",
                    "consistency": mode, "db-unavailable-seconds": {...},
                    "files": [{"path", "size", "sha256"}]}; lists every regular file except itself

Safety rules (used by `verify` and by `safe_extract`):
- member names are relative, without `..` components; outer members live under `juju-backup/`;
- only regular files, directories, symlinks and hard links; devices and FIFOs are refused;
- no setuid, setgid or world-writable member (symlinks aside: their mode is never applied): root.tar
  is extracted with `tar -p --same-owner` as root, so such a member would be a root-owned hole;
- no sparse member (GNU 'S' headers, pax GNU.sparse.* of any version): neither Juju nor jujubackup
  writes one, tarfile and GNU tar read them differently, and restore's untar would fail on it late;
- no duplicate member names (a later member could replace a checked one);
- a symlink's target must resolve inside the root. In root.tar an ABSOLUTE target (Juju's
  `var/lib/juju/tools/machine-0 -> /var/lib/juju/tools/2.8-…`) is interpreted relative to the
  extraction root, because root.tar is extracted onto `/`: it is allowed when it stays inside.
  In the outer archive absolute targets are refused. A `..` may not climb out of another symlink;
- no member may be written through a symlink of the same archive; hard-link sources must be safe
  member paths.

root.tar allowlist (verify and `safe_extract(..., state_files_only=True)`, which restore uses for
root.tar): root.tar is extracted onto `/` as root, so every member must be a Juju state file of
an era we read (reference juju-backups.md §3.5/§3.6; :data:`ROOT_STATE_PATTERNS`):
`var/lib/juju/agents/machine-*/**`, `var/lib/juju/tools/**`, `var/lib/juju/init/**`,
`var/lib/juju/{server.pem,system-identity,shared-secret,nonce.txt}`, `var/snap/juju-db/common/**`,
`home/ubuntu/.ssh/authorized_keys` (an agent dir must be named by a machine tag: `machine-0`,
`machine-0-lxd-1`; metadata.is_machine_tag_suffix), plus the directory entries leading to them
(`var`, `var/lib`, `var/lib/juju`, `home/ubuntu/.ssh`, …, directories only). Symlink targets and
hard-link sources must be allowed paths too. Anything else (`etc/cron.d/x`,
`root/.ssh/authorized_keys`, systemd units) fails verification ("root.tar member 'etc/cron.d/x'
is not a Juju state file") and is never extracted.

Public API:
    verify_archive(path, *, expected_sha256=None, expected_sha1_b64=None, expected_size=None)
        -> VerifyReport                       one pass: digests, members, metadata, manifest, BSON
    verify_stream(stream, *, label, ...) -> VerifyReport   the same over any readable binary stream
    VerifyReport.ok / .failures / .raise_for_failures()    raise VerifyError (exit 8) naming problems
    read_members(path, names=(), root_names=()) -> MemberContents   selected outer/root.tar files
    read_agent_conf(path, machine_id) -> str  root.tar var/lib/juju/agents/machine-N/agent.conf
    iter_bson_documents(stream) -> Iterator[bytes]          raw BSON documents of a dump file
    rewrite_archive(src, dst, *, transforms, root_transforms, late_transforms, only_replaced)
        -> RewriteResult   copy an archive in one pass replacing selected members, updating
                           manifest.json; or write only the replaced members (an overlay)
    safe_extract(tar, dest, state_files_only=False) -> list[str]   extract a tarfile refusing unsafe
                                              members (state_files_only: the root.tar allowlist)
    member_problem(...) -> str | None         the safety rules above, for one member
    state_file_problem(member) -> str | None  the root.tar allowlist, for one member
    build_manifest(files, *, tool_version, consistency, db_unavailable_seconds) -> dict
    manifest_entries_for_dir(top) -> list[ManifestEntry]    hash a staging juju-backup/ dir
    digest_file(path) -> ArchiveDigest        SHA-256, Juju SHA-1/base64 and size of a file
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gzip
import hashlib
import json
import multiprocessing
import os
import posixpath
import queue
import struct
import tarfile
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any, cast

import bson
from bson.codec_options import CodecOptions, DatetimeConversion

from jujubackup.alloc import reuse_big_buffers
from jujubackup.errors import JujuBackupError, NotFoundError, VerifyError
from jujubackup.metadata import (
    BackupMetadata,
    count_controller_machines,
    derive_ha_nodes,
    identity_problems,
    is_machine_tag_suffix,
    load_json,
    parse_metadata_json,
)
from jujubackup.tarstream import INFLATE_ERROR, GzipReader, MemberReader, iter_tar

TOP = "juju-backup"
METADATA = "metadata.json"
ROOT_TAR = "root.tar"
DUMP_DIR = "dump"
MANIFEST = "manifest.json"
ROOT_OVERLAY = "root-overlay.tar"
MANIFEST_FORMAT_VERSION = 1

CHUNK = 1024 * 1024
MAX_SMALL_MEMBER = 16 * 1024 * 1024
MAX_BSON_DOC = 64 * 1024 * 1024
_INT32 = struct.Struct("<i")
BSON_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
"""Decode options that round-trip every BSON value (dates outside Python's range stay DatetimeMS)."""

Transform = Callable[[IO[bytes], IO[bytes]], None]
"""Reads the old member from the first stream, writes the new content to the second."""


# ---------------------------------------------------------------------------------------------
# data types


@dataclass(frozen=True)
class ArchiveDigest:
    """Digests of the outer .tar.gz bytes: SHA-256 hex, Juju's SHA-1 base64, size in bytes."""

    sha256: str
    sha1_b64: str
    size: int


@dataclass(frozen=True)
class MemberInfo:
    """One tar member: path (outer: relative to juju-backup/; root.tar: as stored), kind
    (file|dir|symlink|hardlink|other), size, mode, link target, sha256 (regular files of the outer tar)."""

    path: str
    kind: str
    size: int = 0
    mode: int = 0
    linkname: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class Check:
    """One verification check: its name, whether it passed, and a message naming what was seen."""

    name: str
    ok: bool
    message: str


@dataclass
class VerifyReport:
    """What `verify_archive` checked and found. `ok` is True when no check failed."""

    label: str
    digest: ArchiveDigest | None = None
    metadata: BackupMetadata | None = None
    manifest: dict[str, Any] | None = None
    members: list[MemberInfo] = field(default_factory=list)
    root_members: list[MemberInfo] = field(default_factory=list)
    dump_files: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, message: str) -> None:
        """Record one check result."""
        self.checks.append(Check(name, ok, message))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def raise_for_failures(self) -> None:
        """Raise VerifyError (exit 8) naming the first failed checks if any failed; else return."""
        failed = self.failures
        if not failed:
            return
        shown = "; ".join(c.message for c in failed[:3])
        more = f" (+{len(failed) - 3} more)" if len(failed) > 3 else ""
        raise VerifyError(
            f"archive {self.label} did not verify: {shown}{more}",
            "the archive is damaged or unsafe; use another copy (`jujubackup verify` lists every check)",
        )

    def as_dict(self) -> dict[str, Any]:
        """Return plain data for --format json/yaml."""
        return {
            "archive": self.label,
            "ok": self.ok,
            "sha256": self.digest.sha256 if self.digest else None,
            "sha1-base64": self.digest.sha1_b64 if self.digest else None,
            "size": self.digest.size if self.digest else None,
            "metadata": self.metadata.to_api_dict() if self.metadata else None,
            "checks": [{"name": c.name, "ok": c.ok, "message": c.message} for c in self.checks],
        }


@dataclass(frozen=True)
class MemberContents:
    """Files read by `read_members`: outer members by relative path, root.tar members by name."""

    files: dict[str, bytes]
    root_files: dict[str, bytes]


@dataclass(frozen=True)
class RewriteResult:
    """Outcome of `rewrite_archive`: digests of the new archive and which members were replaced."""

    digest: ArchiveDigest
    replaced: tuple[str, ...]
    root_replaced: tuple[str, ...]


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str


# ---------------------------------------------------------------------------------------------
# hashing streams

HASH_QUEUE = 16  # chunks read but not yet hashed by a threaded _HashingReader (16 MiB at most)


class _HashingReader:
    """A read-only stream that hashes (SHA-256, and SHA-1 unless `sha1` is False: archive members
    only need SHA-256 for the manifest) and counts every byte read through it.

    `threaded`: the hashes are computed by a thread of their own (hashlib releases the GIL), so a
    reader that inflates and parses what it reads is not held up by them (verifying a 1 GiB archive
    on 2 CPUs: 2.4 s on one thread, 1.4 s with the archive's digests on another). Call close() (or
    digest()) when done; at most HASH_QUEUE chunks wait for the thread."""

    def __init__(self, raw: IO[bytes] | Any, *, sha1: bool = True, threaded: bool = False) -> None:
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1()
        self.with_sha1 = sha1
        self.size = 0
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(HASH_QUEUE)
            self._thread = threading.Thread(target=self._hash_queued, name="jujubackup-hash", daemon=True)
            self._thread.start()

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
        if self._queue is not None:
            if data:  # a view may be of a buffer its stream reuses: the thread gets a copy
                self._queue.put(data if isinstance(data, bytes) else bytes(data))
            return
        self._update(data)

    def _update(self, data: memoryview | bytes) -> None:
        self.sha256.update(data)
        if self.with_sha1:
            self.sha1.update(data)

    def _hash_queued(self) -> None:
        """The hashing thread: update with each queued chunk until None."""
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            self._update(data)

    def close(self) -> None:
        """Wait for the hashing thread to hash what was read, and stop it (no-op unthreaded)."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None
            self._thread = None

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


# ---------------------------------------------------------------------------------------------
# member safety


def _kind(member: tarfile.TarInfo) -> str:
    """Return file|dir|symlink|hardlink|device|fifo|other for a tar member."""
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.ischr() or member.isblk():
        return "device"
    if member.isfifo():
        return "fifo"
    return "other"


def normalize_name(name: str) -> str:
    """Return a tar member name without a leading "./" and trailing "/" (other text unchanged)."""
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/") if name not in ("", "/") else name


def path_problem(name: str) -> str | None:
    """Given a member name, return why it is unsafe (absolute, `..`, empty) or None if safe."""
    if not name or name in (".", "/"):
        return "has an empty name"
    if name.startswith("/"):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "has a '..' component"
    if "\x00" in name:
        return "has a NUL byte in its name"
    return None


def link_target_problem(
    name: str, linkname: str, *, absolute_ok: bool, symlinks: Iterable[str] = ()
) -> str | None:
    """Given a symlink member `name -> linkname`, return why its target escapes the root, or None.

    Absolute targets are taken relative to the root when `absolute_ok`, else refused. A `..` that
    climbs out of a path that is itself a symlink of the archive (`symlinks`) is refused, because
    the lexical check cannot know where that symlink points on disk.
    """
    if not linkname:
        return "is a symlink with an empty target"
    if linkname.startswith("/"):
        if not absolute_ok:
            return f"is a symlink to the absolute path {linkname!r}"
        stack: list[str] = []
        rest = linkname.lstrip("/")
    else:
        stack = [p for p in posixpath.dirname(name).split("/") if p]
        rest = linkname
    links = set(symlinks)
    for part in rest.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return f"is a symlink whose target {linkname!r} escapes the root"
            if "/".join(stack) in links:
                return f"is a symlink whose target {linkname!r} climbs out of another symlink"
            stack.pop()
        else:
            stack.append(part)
    return None


def member_problem(
    member: tarfile.TarInfo, *, absolute_links_ok: bool, symlinks: Iterable[str] = ()
) -> str | None:
    """Given a tar member and the symlink names seen so far in the same archive, return why it is
    unsafe to extract (path, type, link target, written through a symlink), or None if it is safe."""
    name = normalize_name(member.name)
    problem = path_problem(name)
    if problem:
        return problem
    kind = _kind(member)
    if kind in ("device", "fifo", "other"):
        return f"is a {kind} ({'char/block special file' if kind == 'device' else 'special file'})"
    if member.sparse is not None or (member.pax_headers and _has_sparse_keys(member.pax_headers)):
        return "is a sparse file"
    if kind != "symlink" and member.mode & _UNSAFE_MODE_BITS:
        return _mode_problem(member.mode)
    links = symlinks if isinstance(symlinks, (set, frozenset)) else set(symlinks)
    via = _through_symlink(name, links)
    if via:
        return f"would be written through the symlink {via!r}"
    if kind == "symlink":
        return link_target_problem(name, member.linkname, absolute_ok=absolute_links_ok, symlinks=links)
    if kind == "hardlink":
        return _hardlink_problem(normalize_name(member.linkname), links)
    return None


_UNSAFE_MODE_BITS = 0o6002


def _has_sparse_keys(pax_headers: Mapping[str, str]) -> bool:
    """Return True if a member's pax headers hold GNU sparse keys (GNU.sparse.*, any version: GNU
    tar acts on them where tarfile does not know the version)."""
    return any(key.startswith("GNU.sparse.") for key in pax_headers)


def _mode_problem(mode: int) -> str:
    """Given a member mode with setuid, setgid or o+w set, return which ("is setuid" …)."""
    if mode & 0o4000:
        return f"is setuid (mode {mode & 0o7777:04o})"
    if mode & 0o2000:
        return f"is setgid (mode {mode & 0o7777:04o})"
    return f"is world-writable (mode {mode & 0o7777:04o})"


ROOT_STATE_PATTERNS: tuple[str, ...] = (
    "var/lib/juju/agents/machine-*/**",
    "var/lib/juju/tools/**",
    "var/lib/juju/init/**",
    "var/lib/juju/server.pem",
    "var/lib/juju/system-identity",
    "var/lib/juju/shared-secret",
    "var/lib/juju/nonce.txt",
    "var/snap/juju-db/common/**",
    "home/ubuntu/.ssh/authorized_keys",
)
"""root.tar members allowed (reference §3.5/§3.6, every era we read): one glob per path component,
a final `**` = that path and everything under it. Their parent directories are allowed as directories."""


def _state_parent_dirs(patterns: Iterable[str]) -> frozenset[str]:
    """Return the directories leading to the patterns (the path parts before their first glob)."""
    out = set()
    for pattern in patterns:
        parts = pattern.split("/")
        for i in range(1, len(parts)):
            if any(c in parts[i - 1] for c in "*?["):
                break
            out.add("/".join(parts[:i]))
    return frozenset(out)


_STATE_PARENT_DIRS = _state_parent_dirs(ROOT_STATE_PATTERNS)


def _matches_state_pattern(parts: list[str], pattern: str) -> bool:
    """Return True if the path components `parts` match one ROOT_STATE_PATTERNS entry."""
    pat_parts = pattern.split("/")
    for i, pat in enumerate(pat_parts):
        if pat == "**":
            return True
        if i >= len(parts) or not fnmatchcase(parts[i], pat):
            return False
    return len(parts) == len(pat_parts)


def is_state_path(name: str, *, is_dir: bool = False) -> bool:
    """Given a root.tar member name (no leading "/"), return True if it is an allowed Juju state path
    (ROOT_STATE_PATTERNS), or, when `is_dir`, a directory leading to one."""
    name = normalize_name(name)
    if is_dir and name in _STATE_PARENT_DIRS:
        return True
    parts = name.split("/")
    if parts[:4] == _AGENTS and len(parts) > 4 and not _is_machine_agent_dir(parts[4]):
        return False
    return any(_matches_state_pattern(parts, p) for p in ROOT_STATE_PATTERNS)


_AGENTS = ["var", "lib", "juju", "agents"]


def _is_machine_agent_dir(name: str) -> bool:
    """Return True for `machine-<tag suffix>` (names.MachineTag: `machine-0`, `machine-0-lxd-1`)."""
    return name.startswith("machine-") and is_machine_tag_suffix(name[len("machine-"):])


def _lexical_link_target(name: str, linkname: str) -> str:
    """Return where symlink `name -> linkname` points, relative to the root ("/" = the root)."""
    joined = linkname if linkname.startswith("/") else "/" + posixpath.join(posixpath.dirname(name), linkname)
    return posixpath.normpath(joined).lstrip("/")


def state_file_problem(member: tarfile.TarInfo) -> str | None:
    """Given a root.tar member already found safe by member_problem, return why it is not allowed
    by the root.tar allowlist (not a Juju state file; a symlink or hard link to a path that is not
    one), or None if it is allowed."""
    name = normalize_name(member.name)
    if not is_state_path(name, is_dir=member.isdir()):
        return "is not a Juju state file"
    if member.issym():
        target = _lexical_link_target(name, member.linkname)
        if not is_state_path(target, is_dir=True):
            return f"is a symlink to {member.linkname!r}, which is not a Juju state path"
    if member.islnk() and not is_state_path(normalize_name(member.linkname)):
        return f"is a hard link to {member.linkname!r}, which is not a Juju state file"
    return None


def _through_symlink(name: str, links: set[str] | frozenset[str]) -> str | None:
    """Return the archive symlink that is a proper prefix of `name`, or None."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if prefix in links:
            return prefix
    return None


def _hardlink_problem(target: str, links: set[str] | frozenset[str]) -> str | None:
    """Return why a hard link to archive path `target` is unsafe (bad path, or the target is or goes
    through an archive symlink, which os.link would follow), or None."""
    problem = path_problem(target)
    if problem:
        return f"is a hard link whose target {problem}"
    if target in links or _through_symlink(target, links):
        return f"is a hard link to {target!r}, which is or goes through a symlink"
    return None


class _MemberGuard:
    """Tracks one tar's members to apply member_problem plus the no-duplicates rule."""

    def __init__(self, *, absolute_links_ok: bool, state_files_only: bool = False) -> None:
        self.absolute_links_ok = absolute_links_ok
        self.state_files_only = state_files_only
        self.symlinks: set[str] = set()
        self.seen: dict[str, bool] = {}
        self.symlink_members: list[tarfile.TarInfo] = []

    def problem(self, member: tarfile.TarInfo) -> str | None:
        """Return why `member` is unsafe given the members before it, or None; record it."""
        name = normalize_name(member.name)
        problem = member_problem(member, absolute_links_ok=self.absolute_links_ok, symlinks=self.symlinks)
        if problem is None and self.state_files_only:
            problem = state_file_problem(member)
        if problem is None and name in self.seen and not (member.isdir() and self.seen[name]):
            problem = "appears twice in the archive"
        self.seen[name] = member.isdir()
        if member.issym():
            self.symlinks.add(name)
            self.symlink_members.append(member)
        return problem

    def late_link_problems(self) -> list[tuple[str, str]]:
        """Recheck every symlink against all symlinks of the archive (later ones included)."""
        out = []
        for m in self.symlink_members:
            name = normalize_name(m.name)
            others = self.symlinks - {name}
            p = link_target_problem(name, m.linkname, absolute_ok=self.absolute_links_ok, symlinks=others)
            if p:
                out.append((name, p))
        return out


# ---------------------------------------------------------------------------------------------
# BSON


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


# ---------------------------------------------------------------------------------------------
# verify


STREAM_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, INFLATE_ERROR)


def verify_archive(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    expected_sha1_b64: str | None = None,
    expected_size: int | None = None,
    sha1: bool = True,
    workers: bool = True,
) -> VerifyReport:
    """Given an archive file, verify it in one streaming pass and return the VerifyReport.

    `sha1` False skips Juju's SHA-1 of the archive (digest.sha1_b64 is "" then) unless one is
    expected; `workers` False decodes big dump files here instead of in worker processes (for a
    caller whose other work needs the CPUs more, e.g. a verification running while the archive is sent).

    Checks: readable gzip+tar (CRC included), digests against the expectations given, member safety
    (outer and root.tar, root.tar allowlist), metadata.json parses (FormatVersion 0/1) with a valid
    ID/ModelUUID/ControllerUUID when set (metadata.identity_problems), root.tar and dump/ exist, dump
    .bson files are well-formed, manifest entries match. Raise NotFoundError if the file is missing;
    never raise for a bad archive (call `report.raise_for_failures()`).
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"archive {p} not found", "give the path of a juju-backup .tar.gz")
    with p.open("rb") as raw:
        return verify_stream(
            raw,
            label=str(p),
            expected_sha256=expected_sha256,
            expected_sha1_b64=expected_sha1_b64,
            expected_size=expected_size,
            sha1=sha1,
            workers=workers,
        )


def verify_stream(
    raw: IO[bytes],
    *,
    label: str,
    expected_sha256: str | None = None,
    expected_sha1_b64: str | None = None,
    expected_size: int | None = None,
    sha1: bool = True,
    workers: bool = True,
) -> VerifyReport:
    """Like verify_archive, over a readable binary stream positioned at the archive's first byte."""
    report = VerifyReport(label=label)
    reader = _HashingReader(raw, sha1=sha1 or bool(expected_sha1_b64), threaded=True)
    state = _VerifyState(report, workers=workers)
    try:
        try:
            # iter_tar reads to the end of the gzip stream: zlib checks its CRC and length
            for member, data in iter_tar(GzipReader(reader)):
                state.member(member, data)
            report.add("readable", True, "gzip and tar streams read to the end, gzip CRC matches")
            complete = True
        except STREAM_ERRORS as err:
            complete = False
            report.add("readable", False, f"archive is truncated or corrupt ({_err_text(err)})")
        except JujuBackupError as err:
            complete = False
            report.add("readable", False, err.message)
        finally:
            state.close()
        reader.drain()
        report.digest = reader.digest()
    finally:
        reader.close()  # the hashing thread stops also when verifying was interrupted
    _check_digests(report, expected_sha256, expected_sha1_b64, expected_size)
    state.finish(complete=complete)
    return report


def _err_text(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) < 200 else text[:200] + "…"


def _check_digests(report: VerifyReport, sha256: str | None, sha1_b64: str | None, size: int | None) -> None:
    """Compare the archive digests with the expected ones given (the in-archive metadata cannot
    hold the archive's own checksum; callers pass the catalog's or the sidecar's)."""
    digest = report.digest
    assert digest is not None
    if size is not None:
        report.add("size", digest.size == size, f"size {digest.size} bytes (expected {size})")
    if sha256:
        ok = digest.sha256 == sha256.lower()
        report.add("sha256", ok, f"SHA-256 {digest.sha256}" + ("" if ok else f" does not match {sha256}"))
    if sha1_b64:
        ok = digest.sha1_b64 == sha1_b64
        report.add("sha1", ok, f"SHA-1 {digest.sha1_b64}" + ("" if ok else f" does not match {sha1_b64}"))


class _VerifyState:
    """Per-pass state of verify_stream: member checks, hashes, metadata, HANodes inputs."""

    def __init__(self, report: VerifyReport, *, workers: bool = True) -> None:
        self.report = report
        self.workers = workers
        self.guard = _MemberGuard(absolute_links_ok=False)
        self.root_guard = _MemberGuard(absolute_links_ok=True, state_files_only=True)
        self.hashes: dict[str, tuple[int, str]] = {}
        self.unsafe: list[str] = []
        self.bad_bson: list[str] = []
        self.metadata_error: str | None = None
        self.manifest_raw: bytes | None = None
        self.controller_nodes: int | None = None
        self.machine_counts: dict[str, int] = {}
        self.root_seen = False
        self.root_error: str | None = None
        self.dump_seen = False
        self.pool: Executor | None = None
        self.pool_tried = False

    def close(self) -> None:
        """Shut the BSON decode pool down if one was started."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _pool_for(self, size: int) -> Executor | None:
        """Return the decode pool for a dump file of `size` bytes (started at the first big file)."""
        if self.workers and size >= BSON_POOL_MIN and not self.pool_tried:
            self.pool_tried = True
            self.pool = bson_pool()
        return self.pool

    def member(self, member: tarfile.TarInfo, data: MemberReader | None) -> None:
        """Check one outer member and read its content (`data`) if it is a regular file."""
        name = normalize_name(member.name)
        problem = self.guard.problem(member)
        if problem is None and name != TOP and not name.startswith(TOP + "/"):
            problem = f"is outside the {TOP}/ folder"
        rel = name[len(TOP) + 1 :] if name.startswith(TOP + "/") else name
        if problem:
            self.unsafe.append(f"member {member.name!r} {problem}")
        if rel == DUMP_DIR or rel.startswith(DUMP_DIR + "/"):
            self.dump_seen = True
        info = MemberInfo(rel, _kind(member), member.size, member.mode, member.linkname)
        if member.isreg() and not problem:
            if data is None:  # a sparse member: not something an archive of ours or Juju's holds
                self.unsafe.append(f"member {member.name!r} is a sparse file")
            else:
                info = MemberInfo(
                    rel, "file", member.size, member.mode, "", self._read_file(rel, data, member.size)
                )
        self.report.members.append(info)

    def _read_file(self, rel: str, fileobj: IO[bytes] | MemberReader, size: int) -> str:
        """Read one outer regular file, checking it by kind; return its sha256 hex."""
        hashed = _HashingReader(fileobj, sha1=False)
        if rel == METADATA:
            self._read_metadata(hashed.read(MAX_SMALL_MEMBER + 1))
        elif rel == MANIFEST:
            self.manifest_raw = hashed.read(MAX_SMALL_MEMBER + 1)
        elif rel == ROOT_TAR:
            self._read_root_tar(hashed)
        elif rel.startswith(DUMP_DIR + "/") and rel.endswith((".bson", ".bson.gz")):
            self._read_bson(rel, hashed, size)
        hashed.drain()
        self.hashes[rel] = (hashed.size, hashed.sha256.hexdigest())
        return hashed.sha256.hexdigest()

    def _read_metadata(self, data: bytes) -> None:
        try:
            self.report.metadata = parse_metadata_json(data)
        except VerifyError as err:
            self.metadata_error = err.message

    def _read_root_tar(self, stream: Any) -> None:
        self.root_seen = True
        source = _SourceGuard(stream)
        try:
            for m, _data in iter_tar(source):
                problem = self.root_guard.problem(m)
                if problem:
                    self.unsafe.append(f"root.tar member {m.name!r} {problem}")
                self.report.root_members.append(
                    MemberInfo(normalize_name(m.name), _kind(m), m.size, m.mode, m.linkname)
                )
        except tarfile.TarError as err:
            if source.failed:
                raise
            self.root_error = f"root.tar is not a readable tar ({_err_text(err)})"

    def _read_bson(self, rel: str, stream: Any, size: int) -> None:
        """Check one dump file (`.bson`, or `.bson.gz` from `mongodump --gzip`) document by document;
        record a bad file, or feed the HANodes inputs. Errors of the outer stream propagate."""
        self.report.dump_files.append(rel)
        base = rel.removesuffix(".gz")
        on_doc: Callable[[dict[str, Any]], None] | None = None
        machines: list[dict[str, Any]] = []
        if base == f"{DUMP_DIR}/juju/machines.bson":
            on_doc = lambda d: machines.append({k: d.get(k) for k in ("jobs", "model-uuid", "env-uuid")})  # noqa: E731
        source = _SourceGuard(stream)
        try:
            if rel.endswith(".gz"):
                count = check_bson_stream(cast(IO[bytes], GzipReader(source)), on_doc)
            else:
                count = check_bson_stream(cast(IO[bytes], source), on_doc, pool=self._pool_for(size))
        except (ValueError, EOFError, OSError, zlib.error, INFLATE_ERROR) as err:
            if source.failed:
                raise
            self.bad_bson.append(f"{rel} is not well-formed BSON: {_err_text(err)}")
            return
        if base == f"{DUMP_DIR}/juju/controllerNodes.bson":
            self.controller_nodes = count
        if machines:
            self.machine_counts = count_controller_machines(machines)

    def finish(self, *, complete: bool) -> None:
        """Record the checks that need the whole pass. When the stream broke (`complete` False),
        only the problems already found are recorded: absent members were maybe never reached."""
        r = self.report
        for name, problem in self.root_guard.late_link_problems():
            msg = f"root.tar member {name!r} {problem}"
            if msg not in self.unsafe:
                self.unsafe.append(msg)
        for msg in self.unsafe:
            r.add("members", False, msg)
        for msg in self.bad_bson:
            r.add("dump", False, msg)
        if self.metadata_error:
            r.add("metadata", False, self.metadata_error)
        if not complete:
            return
        if not self.unsafe:
            r.add(
                "members",
                True,
                f"{len(r.members)} members and {len(r.root_members)} root.tar members "
                "stay inside their root (no absolute paths, '..', escaping links or devices)",
            )
        self._finish_metadata()
        self._finish_layout()
        self._finish_manifest()

    def _finish_metadata(self) -> None:
        r = self.report
        if self.metadata_error:
            return
        if r.metadata is None:
            r.add("metadata", False, f"{TOP}/{METADATA} is missing")
        else:
            md = r.metadata
            bad_ids = identity_problems(md)
            for msg in bad_ids:
                r.add("metadata", False, msg)
            if bad_ids:
                return
            if md.ha_nodes is None:
                ha = derive_ha_nodes(self.controller_nodes, self.machine_counts, md.model_uuid)
                r.metadata = md = _with_ha_nodes(md, ha)
            r.add(
                "metadata",
                True,
                f"metadata FormatVersion {md.format_version}, machine {md.machine!r}, "
                f"Juju {md.version}, HANodes {md.ha_nodes}",
            )

    def _finish_layout(self) -> None:
        r = self.report
        if not self.root_seen:
            r.add("root.tar", False, f"{TOP}/{ROOT_TAR} is missing (the archive has no state files)")
        elif self.root_error:
            r.add("root.tar", False, self.root_error)
        else:
            r.add("root.tar", True, f"root.tar has {len(r.root_members)} members")
        if not self.dump_seen:
            r.add("dump", False, f"{TOP}/{DUMP_DIR}/ is missing (the archive has no database dump)")
        elif not self.bad_bson:
            r.add("dump", True, f"{len(r.dump_files)} dump .bson files are well-formed BSON")

    def _finish_manifest(self) -> None:
        r = self.report
        if self.manifest_raw is None:
            r.add("manifest", True, "no manifest.json (an archive made by Juju): member checksums not listed")
            return
        try:
            r.manifest = parse_manifest(self.manifest_raw)
        except VerifyError as err:
            r.add("manifest", False, err.message)
            return
        problems = compare_manifest(r.manifest, self.hashes)
        for msg in problems:
            r.add("manifest", False, msg)
        if not problems:
            r.add("manifest", True, f"all {len(r.manifest['files'])} manifest entries match (size, SHA-256)")


def _with_ha_nodes(md: BackupMetadata, ha: int) -> BackupMetadata:
    """Return a copy of `md` with HANodes set."""
    return replace(md, ha_nodes=ha)


# ---------------------------------------------------------------------------------------------
# manifest


def build_manifest(
    files: Iterable[ManifestEntry],
    *,
    tool_version: str,
    consistency: str,
    db_unavailable_seconds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Given the archive's regular files (paths relative to juju-backup/, manifest.json excluded),
    return the manifest.json object (files sorted by path)."""
    return {
        "format-version": MANIFEST_FORMAT_VERSION,
        "tool": f"jujubackup {tool_version}",
        "consistency": consistency,
        "db-unavailable-seconds": dict(db_unavailable_seconds or {}),
        "files": [
            {"path": e.path, "size": e.size, "sha256": e.sha256} for e in sorted(files, key=lambda e: e.path)
        ],
    }


def manifest_entries_for_dir(top: str | os.PathLike[str]) -> list[ManifestEntry]:
    """Given a staging `juju-backup/` directory, return a ManifestEntry per regular file under it
    (manifest.json excluded, symlinks not followed)."""
    root = Path(top)
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for fname in files:
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            if rel == MANIFEST or full.is_symlink() or not full.is_file():
                continue
            with full.open("rb") as f:
                size, sha = _copy_hashing(f)
            out.append(ManifestEntry(rel, size, sha))
    return out


def parse_manifest(data: bytes | str) -> dict[str, Any]:
    """Given manifest.json text, return it as a dict. Raise VerifyError if malformed (nested too
    deeply included) or newer than 1."""
    doc = load_json(data, "manifest.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise VerifyError("manifest.json has no 'files' list")
    version = doc.get("format-version")
    if version != MANIFEST_FORMAT_VERSION:
        raise VerifyError(f"manifest.json format-version {version!r} is not one this jujubackup reads (1)")
    for entry in doc["files"]:
        if not isinstance(entry, dict) or not {"path", "size", "sha256"} <= entry.keys():
            raise VerifyError(f"manifest.json has a malformed entry {entry!r}")
    return doc


def compare_manifest(manifest: Mapping[str, Any], seen: Mapping[str, tuple[int, str]]) -> list[str]:
    """Given a parsed manifest and {path: (size, sha256)} of the archive's regular files, return one
    message per mismatch: missing file, size or SHA-256 differs, file not listed."""
    problems = []
    listed = set()
    for entry in manifest["files"]:
        path = str(entry["path"])
        listed.add(path)
        if path not in seen:
            problems.append(f"manifest lists {path} but the archive does not contain it")
            continue
        size, sha = seen[path]
        if size != entry["size"]:
            problems.append(f"{path} is {size} bytes, the manifest says {entry['size']}")
        elif sha != entry["sha256"]:
            problems.append(f"{path} SHA-256 {sha} does not match the manifest ({entry['sha256']})")
    for path in sorted(set(seen) - listed - {MANIFEST}):
        problems.append(f"{path} is in the archive but not in the manifest")
    return problems


# ---------------------------------------------------------------------------------------------
# reading members


def read_members(
    path: str | os.PathLike[str],
    names: Iterable[str] = (),
    root_names: Iterable[str] = (),
    *,
    max_bytes: int = MAX_SMALL_MEMBER,
) -> MemberContents:
    """Given an archive and outer member paths (relative to juju-backup/) and root.tar member names,
    return their contents in one streaming pass. Absent members are absent from the result.
    Raise VerifyError if the archive is unreadable or a wanted member is larger than `max_bytes`."""
    try:
        with open(path, "rb") as raw:
            return read_members_stream(raw, names, root_names, max_bytes=max_bytes, label=f"archive {path}")
    except STREAM_ERRORS as err:
        raise VerifyError(f"archive {path} is truncated or corrupt ({_err_text(err)})") from err


def read_members_stream(
    raw: IO[bytes] | Any,
    names: Iterable[str] = (),
    root_names: Iterable[str] = (),
    *,
    max_bytes: int = MAX_SMALL_MEMBER,
    label: str = "the archive",
) -> MemberContents:
    """read_members over a readable stream of the archive (e.g. an age-encrypted copy decrypted as it
    is read); reading stops once every wanted member was read. Raise VerifyError as read_members."""
    wanted = set(names)
    root_wanted = {normalize_name(n.lstrip("/")) for n in root_names}
    files: dict[str, bytes] = {}
    root_files: dict[str, bytes] = {}
    try:
        for member, data in iter_tar(GzipReader(raw)):
            rel = _rel(member.name)
            if data is None or (rel not in wanted and not (rel == ROOT_TAR and root_wanted)):
                continue
            if rel == ROOT_TAR and root_wanted:
                root_files.update(_read_root_members(data, root_wanted, max_bytes))
                root_wanted = set()
            elif rel in wanted:
                files[rel] = _read_capped(data, rel, max_bytes)
            if not root_wanted and wanted <= files.keys():
                break  # everything asked for is read: the rest of the archive is not needed
    except STREAM_ERRORS as err:
        raise VerifyError(f"{label} is truncated or corrupt ({_err_text(err)})") from err
    return MemberContents(files, root_files)


def _rel(name: str) -> str:
    """Return an outer member name relative to juju-backup/."""
    name = normalize_name(name)
    return name[len(TOP) + 1 :] if name.startswith(TOP + "/") else name


def _read_capped(fileobj: IO[bytes] | MemberReader, label: str, max_bytes: int) -> bytes:
    data = fileobj.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise VerifyError(f"archive member {label} is larger than {max_bytes} bytes; not read into memory")
    return data


def _read_root_members(stream: MemberReader, wanted: set[str], max_bytes: int) -> dict[str, bytes]:
    out = {}
    for m, data in iter_tar(stream):
        name = normalize_name(m.name)
        if data is not None and name in wanted:
            out[name] = _read_capped(data, f"root.tar:{name}", max_bytes)
            if len(out) == len(wanted):
                break
    return out


def agent_conf_path(machine_id: str) -> str:
    """Return the root.tar member name of machine N's agent.conf."""
    return f"var/lib/juju/agents/machine-{machine_id}/agent.conf"


def read_agent_conf(path: str | os.PathLike[str], machine_id: str) -> str:
    """Given an archive and the backed-up machine id, return its agent.conf text from root.tar.
    Raise VerifyError if root.tar has no such file."""
    name = agent_conf_path(machine_id)
    found = read_members(path, root_names=[name]).root_files
    if name not in found:
        raise VerifyError(f"root.tar of {path} has no {name}", "is this the backup of another machine?")
    return found[name].decode("utf-8")


# ---------------------------------------------------------------------------------------------
# rewriting


def rewrite_archive(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    transforms: Mapping[str, Transform] | None = None,
    root_transforms: Mapping[str, Callable[[bytes], bytes]] | None = None,
    late_transforms: Mapping[str, Transform] | None = None,
    compresslevel: int = 6,
    tmp_dir: str | os.PathLike[str] | None = None,
    only_replaced: bool = False,
) -> RewriteResult:
    """Copy archive `src` to `dst` (created 0600) in one streaming pass, replacing members.

    `transforms` maps outer paths (relative to juju-backup/, e.g. "dump/juju/machines.bson") to a
    function reading the old content and writing the new; `root_transforms` maps root.tar member
    names to a function old bytes -> new bytes. `late_transforms` are like `transforms` but run
    after every other member was copied (the old content is spooled to a temp file and the member
    moves to the end of the archive): for a member whose rewrite depends on what other transforms
    found (the oplog). Other members are copied with their headers; the manifest (if any) is
    written last with updated entries. With `only_replaced`, `dst` is an OVERLAY: only the
    replaced outer members, and instead of root.tar a `root-overlay.tar` holding only the replaced
    root.tar members (headers kept), no manifest. Return the new digests and what was replaced.
    Raise VerifyError if `src` is unreadable; `dst` is removed on any error.
    """
    transforms = dict(transforms or {})
    root_transforms = {normalize_name(k): v for k, v in (root_transforms or {}).items()}
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out_raw:
            writer = _HashingWriter(out_raw)
            job = _Rewrite(transforms, root_transforms, dict(late_transforms or {}), tmp_dir, only_replaced)
            with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                job.run(src, cast(IO[bytes], gz))
        return RewriteResult(writer.digest(), tuple(job.replaced), tuple(job.root_replaced))
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


class _Rewrite:
    """One rewrite_archive pass."""

    def __init__(
        self,
        transforms: dict[str, Transform],
        root_transforms: dict[str, Callable[[bytes], bytes]],
        late_transforms: dict[str, Transform],
        tmp_dir: str | os.PathLike[str] | None,
        only_replaced: bool = False,
    ) -> None:
        self.only_replaced = only_replaced
        self.transforms = transforms
        self.root_transforms = root_transforms
        self.late_transforms = late_transforms
        self.spooled: list[tuple[tarfile.TarInfo, str, IO[bytes]]] = []
        self.stack = contextlib.ExitStack()
        self.tmp_dir = tmp_dir
        self.replaced: list[str] = []
        self.root_replaced: list[str] = []
        self.new_hashes: dict[str, tuple[int, str]] = {}
        self.manifest: tuple[tarfile.TarInfo, bytes] | None = None

    def run(self, src: str | os.PathLike[str], out: IO[bytes]) -> None:
        try:
            with (
                contextlib.ExitStack() as self.stack,
                open(src, "rb") as raw,
                tarfile.open(fileobj=out, mode="w|") as tout,
            ):
                for member, data in iter_tar(GzipReader(raw)):
                    self._member(tout, member, data)
                self._write_late(tout)
                if not self.only_replaced:
                    self._write_manifest(tout)
        except STREAM_ERRORS as err:
            raise VerifyError(f"archive {src} is truncated or corrupt ({_err_text(err)})") from err

    def _member(self, tout: tarfile.TarFile, member: tarfile.TarInfo, data: MemberReader | None) -> None:
        rel = _rel(member.name)
        if not member.isreg():
            if not self.only_replaced:
                tout.addfile(member)
            return
        if data is None:
            raise tarfile.ReadError(f"member {member.name!r} is a sparse file")
        fileobj = cast(IO[bytes], data)
        if rel == MANIFEST:
            self.manifest = (member, _read_capped(fileobj, MANIFEST, MAX_SMALL_MEMBER))
        elif rel in self.transforms:
            self._replace(tout, member, rel, lambda dst: self.transforms[rel](fileobj, dst))
            self.replaced.append(rel)
        elif rel in self.late_transforms:
            spool = self.stack.enter_context(tempfile.TemporaryFile(dir=self.tmp_dir))  # noqa: SIM115
            self.spooled.append((member, rel, spool))
            _copy_hashing(fileobj, spool)
        elif rel == ROOT_TAR and self.root_transforms:
            name = f"{TOP}/{ROOT_OVERLAY}" if self.only_replaced else member.name
            self._replace(tout, member, rel, lambda dst: self._rewrite_root(fileobj, dst), name=name)
            self.replaced.append(rel)
        elif not self.only_replaced:
            tout.addfile(member, fileobj)

    def _replace(
        self,
        tout: tarfile.TarFile,
        member: tarfile.TarInfo,
        rel: str,
        produce: Callable[[IO[bytes]], None],
        *,
        name: str | None = None,
    ) -> None:
        """Write the new content to a temp file (the tar header needs its size), then add it."""
        with tempfile.TemporaryFile(dir=self.tmp_dir) as tmp:
            produce(tmp)
            tmp.seek(0)
            size, sha = _copy_hashing(tmp)
            tmp.seek(0)
            info = _copy_info(member, size, name=name)
            tout.addfile(info, tmp)
        self.new_hashes[rel] = (size, sha)

    def _rewrite_root(self, src: IO[bytes], dst: IO[bytes]) -> None:
        with tarfile.open(fileobj=dst, mode="w|", format=tarfile.GNU_FORMAT) as tout:
            for m, f in iter_tar(src):
                name = normalize_name(m.name)
                if m.isreg() and f is None:
                    raise tarfile.ReadError(f"root.tar member {m.name!r} is a sparse file")
                if f is not None and name in self.root_transforms:
                    data = self.root_transforms[name](f.read())
                    info = _copy_info(m, len(data))
                    tout.addfile(info, _BytesReader(data))
                    self.root_replaced.append(name)
                elif not self.only_replaced:
                    tout.addfile(m, f)

    def _write_late(self, tout: tarfile.TarFile) -> None:
        """Run the late transforms over their spooled members and add the results."""
        for member, rel, spool in self.spooled:
            spool.seek(0)
            transform = self.late_transforms[rel]
            self._replace(tout, member, rel, functools.partial(transform, spool))
            self.replaced.append(rel)

    def _write_manifest(self, tout: tarfile.TarFile) -> None:
        if self.manifest is None:
            return
        member, data = self.manifest
        doc = json.loads(data)
        for entry in doc.get("files", []):
            if entry.get("path") in self.new_hashes:
                entry["size"], entry["sha256"] = self.new_hashes[entry["path"]]
        new = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
        tout.addfile(_copy_info(member, len(new)), _BytesReader(new))


class _BytesReader:
    """Minimal readable stream over bytes (what tarfile.addfile needs)."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk


def _copy_info(member: tarfile.TarInfo, size: int, *, name: str | None = None) -> tarfile.TarInfo:
    """Return a copy of a member's header with a new size (and name)."""
    info = tarfile.TarInfo(name or member.name)
    for attr in ("mode", "uid", "gid", "uname", "gname", "mtime", "type"):
        setattr(info, attr, getattr(member, attr))
    info.pax_headers = dict(member.pax_headers)
    info.size = size
    return info


# ---------------------------------------------------------------------------------------------
# safe extraction


_TRUSTED: dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
"""safe_extract checks every member itself; Pythons with extraction filters (3.11.4+) are told so
(and do not warn), older ones extract that way anyway."""


def safe_extract(
    tar: tarfile.TarFile,
    dest: str | os.PathLike[str],
    *,
    numeric_owner: bool = False,
    state_files_only: bool = False,
) -> list[str]:
    """Extract every member of `tar` (any mode, stream mode included) under `dest`, preserving
    modes, times and (as root) owners, and the archive's symlinks; return the names extracted.

    Raise VerifyError at the first unsafe member (see the module rules; absolute symlink targets are
    allowed when they stay inside the root, as for root.tar onto "/"), or a member whose parent on
    disk resolves outside `dest`. An existing symlink at a file's path is replaced, never followed.
    Members before the unsafe one stay extracted: extract into a fresh directory when that matters.
    With `state_files_only` (root.tar, root-overlay.tar) a member outside the root.tar allowlist
    (ROOT_STATE_PATTERNS) is refused too: "member 'etc/cron.d/x' is not a Juju state file".
    """
    root = Path(dest).resolve()
    guard = _MemberGuard(absolute_links_ok=True, state_files_only=state_files_only)
    done = []
    for member in tar:
        problem = guard.problem(member)
        if problem:
            raise VerifyError(f"refusing to extract: member {member.name!r} {problem}")
        target = root / normalize_name(member.name)
        _check_on_disk(root, target, member)
        if not member.isdir() and target.is_symlink():
            target.unlink()
        if member.islnk():
            source = root / normalize_name(member.linkname)
            _check_on_disk(root, source, member)
            if source.is_symlink():
                raise VerifyError(
                    f"refusing to extract: hard link {member.name!r} points at a symlink on disk"
                )
        tar.extract(member, path=root, numeric_owner=numeric_owner, **_TRUSTED)
        done.append(normalize_name(member.name))
    return done


def _check_on_disk(root: Path, target: Path, member: tarfile.TarInfo) -> None:
    """Raise VerifyError if `target`'s parent (or, for a directory, itself) resolves outside `root`."""
    probe = target if member.isdir() else target.parent
    real = probe.resolve()
    if real != root and root not in real.parents:
        raise VerifyError(
            f"refusing to extract: member {member.name!r} would land outside {root} (via {real})",
            "a symlink on the destination points outside it",
        )
