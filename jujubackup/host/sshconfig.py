"""Read OpenSSH client config files with paramiko.SSHConfig (Include is not supported by paramiko)."""

from __future__ import annotations

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
        config = paramiko.SSHConfig.from_path(str(config_path))
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
