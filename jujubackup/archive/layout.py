"""The archive's layout (member names, limits) and the data types the archive modules return."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from bson.codec_options import CodecOptions, DatetimeConversion

from jujubackup.errors import VerifyError
from jujubackup.metadata import BackupMetadata

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


