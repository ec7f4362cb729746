"""manifest.json (ours): build, hash a staging dir, parse, compare with what an archive holds."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from jujubackup.archive.hashing import _copy_hashing
from jujubackup.archive.layout import MANIFEST, MANIFEST_FORMAT_VERSION, ManifestEntry
from jujubackup.errors import VerifyError
from jujubackup.metadata import load_json


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


