"""Where and how to connect: a resolved SSH target (no paramiko here; `connect.py` builds these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SSHTarget:
    """One fully resolved SSH destination.

    `name` is what the operator gave (alias or address) and is used in messages; `hostname` is what is
    dialled. `known_hosts` are read in order; new keys (only with `accept_new_host_key`) are appended to
    the first one. `jump` is a ProxyJump host reached first. `stream_via` says how archives move
(`auto`, `openssh`, `paramiko`; see host/openssh.py).
    """

    name: str
    hostname: str
    port: int = 22
    user: str = "root"
    identity_files: tuple[Path, ...] = ()
    known_hosts: tuple[Path, ...] = ()
    accept_new_host_key: bool = False
    connect_timeout: float = 10.0
    keepalive: int = 15
    jump: SSHTarget | None = field(default=None)
    stream_via: str = "auto"
    ciphers: tuple[str, ...] = ()
    """The Ciphers the operator's ssh config chose for this host (empty: it chose none); the OpenSSH
    streams and the paramiko control connection offer exactly these (paramiko: those it has), else
    their own preference (host/openssh.py CIPHERS, host/connection.py PREFERRED_CIPHERS)."""

    @property
    def key_name(self) -> str:
        """Return the known_hosts host field for this target (`host` or `[host]:port`)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    @property
    def display(self) -> str:
        """Return `user@name` (plus `:port` when not 22) for messages."""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{self.user}@{self.name}{port}"
