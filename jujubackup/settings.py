"""Typed settings built once by the CLI and passed down to operations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jujubackup.host.base import Connector
    from jujubackup.sudopassword import SudoPassword


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
    sudo_password: SudoPassword | None = field(default=None, compare=False, repr=False)
    """Where the login user's sudo password comes from when a host's sudo needs one (None: never
    answered; `sudo -n` fails with a hint)."""


@dataclass(frozen=True)
class GlobalOptions:
    """Options every verb sees."""

    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    format: OutputFormat = OutputFormat.tabular
    quiet: bool = False
    verbose: bool = False
    make_connector: Callable[[ConnectionSettings], Connector] | None = field(default=None, compare=False)
    """Builds the Connector from `connection`: the CLI's SSH one (tests: a FakeConnector)."""

    @cached_property
    def connector(self) -> Connector:
        """Return the Connector every verb of this invocation connects through, built once on first
        use (a verb that never connects never imports paramiko). Raise RuntimeError without
        `make_connector` (a bug: the CLI always gives one)."""
        if self.make_connector is None:
            raise RuntimeError("GlobalOptions has no make_connector")
        return self.make_connector(self.connection)
