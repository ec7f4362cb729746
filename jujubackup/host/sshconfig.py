"""Read OpenSSH client config files with paramiko.SSHConfig; `Include` (which paramiko does not
support) is expanded here first, as ssh(1) does: in place, globs allowed, paths relative to ~/.ssh."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from jujubackup.errors import UsageError


@dataclass(frozen=True)
class ConfigEntry:
    """The options of one `Host` lookup that jujubackup honours (None when the config does not say)."""

    hostname: str | None = None
    user: str | None = None
    port: int | None = None
    identity_files: tuple[Path, ...] = ()
    known_hosts: tuple[Path, ...] = ()
    proxy_jump: str | None = None


def lookup(config_path: Path | None, alias: str) -> ConfigEntry:
    """Given an ssh config file (None or missing: no config) and a host alias, return its options.

    Raise UsageError if the file exists but cannot be parsed.
    """
    if config_path is None or not config_path.is_file():
        return ConfigEntry()
    try:
        config = paramiko.SSHConfig.from_text(expand_includes(config_path))
        found = config.lookup(alias)
    except (OSError, ValueError, paramiko.SSHException) as err:
        raise UsageError(f"cannot read ssh config {config_path}: {err}") from err
    port = found.get("port")
    proxy = found.get("proxyjump")
    return ConfigEntry(
        hostname=found.get("hostname") if found.get("hostname") != alias else None,
        user=found.get("user"),
        port=int(port) if port else None,
        identity_files=tuple(Path(p).expanduser() for p in found.get("identityfile", []) or []),
        known_hosts=tuple(
            Path(p).expanduser() for p in str(found.get("userknownhostsfile", "")).split() if p
        ),
        proxy_jump=None if proxy in (None, "none") else str(proxy),
    )


MAX_INCLUDE_DEPTH = 16  # as ssh(1)
_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+?)\s*$", re.IGNORECASE)


def expand_includes(path: Path, depth: int = 0) -> str:
    """Given an ssh config file, return its text with every `Include` line replaced by the files it
    names (each path may be a glob, `~` is expanded, a relative path is under ~/.ssh; matches in
    lexical order; a pattern matching nothing is skipped). Raise ValueError past MAX_INCLUDE_DEPTH
    nested includes, OSError if a file cannot be read."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ValueError(f"Include nested more than {MAX_INCLUDE_DEPTH} deep at {path}")
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _INCLUDE.match(line)
        if not match:
            out.append(line)
            continue
        for pattern in match[1].split():
            pattern = str(Path(pattern.strip('"')).expanduser())
            if not Path(pattern).is_absolute():
                pattern = str(Path.home() / ".ssh" / pattern)
            for name in sorted(glob.glob(pattern)):
                if Path(name).is_file():
                    out.append(expand_includes(Path(name), depth + 1))
    return "\n".join(out) + "\n"
