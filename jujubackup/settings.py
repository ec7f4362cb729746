"""Typed settings built once by the CLI and passed down to operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


class OutputFormat(str, Enum):
    tabular = "tabular"
    json = "json"
    yaml = "yaml"


class StreamVia(str, Enum):
    """How archives move: `auto` uses the OpenSSH client when it works and paramiko otherwise."""

    auto = "auto"
    openssh = "openssh"
    paramiko = "paramiko"


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach controllers over SSH (global CLI options).

    `hosts` are `[user@]host[:port]` strings or ssh-config aliases, tried in order.
    """

    hosts: tuple[str, ...] = ()
    controller: str | None = None
    identity: Path | None = None
    ssh_config: Path | None = None
    known_hosts: Path | None = None
    accept_new_host_key: bool = False
    connect_timeout: float = 10.0
    keepalive: int = 15
    user: str | None = None
    stream_via: str = "auto"


@dataclass(frozen=True)
class GlobalOptions:
    """Options every verb sees."""

    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    format: OutputFormat = OutputFormat.tabular
    quiet: bool = False
    verbose: bool = False
