"""Member safety: the rules every member (and every root.tar member: the state-file allowlist) must pass."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from jujubackup.metadata import is_machine_tag_suffix


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


