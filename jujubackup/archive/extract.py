"""safe_extract: extract a tarfile refusing unsafe members."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any

from jujubackup.archive.members import _MemberGuard, normalize_name
from jujubackup.errors import VerifyError

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
