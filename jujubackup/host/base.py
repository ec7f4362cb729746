"""The Host seam: the only way operations talk to a machine, and the Connector that makes Hosts.

Implementations: `jujubackup.host.ssh.SSHHost` (over a fabric.Connection; host/ is the only package
that imports fabric and paramiko) made by `jujubackup.connect.SSHConnector`; tests use
`tests.fakehost.FakeHost` / `FakeConnector`, held to the same contract by
tests/unit/test_host_contract.py (and tests/host/test_host_contract_ssh.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from jujubackup.errors import RemoteStepError
from jujubackup.host.target import SSHTarget
from jujubackup.settings import ConnectionSettings

Progress = Callable[[int], None]
"""Called with the number of bytes just moved."""


class Readable(Protocol):
    """What put and run_stream read from: `read(size)` returning b"" at the end.

    A source that is the rest of a regular file, with no per-chunk work to do, may also have a
    `direct_file()` method (see DirectFile): put then lets the OpenSSH client read the file
    itself, and `read` is only used when the bytes go over paramiko."""

    def read(self, size: int = ..., /) -> bytes:
        ...


class DirectFile(Protocol):
    """A Readable whose bytes are those of an open file from its current position to its end."""

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """Return (file descriptor, check) to send the rest of the file by reading the descriptor
        (its offset moves as it is read), or None when each chunk must go through `read`. `check()`
        is called a few times a second while the file is sent and once after; what it raises stops
        the send (or, raised after it, fails the put all the same)."""
        ...


class DirectSink(Protocol):
    """A sink (what get writes into) that is an open regular file written at its end.

    get may then let the OpenSSH client write the stream into the file itself (`ssh host cat >
    file`: no copy through this process), and `write` is only used when the bytes go over paramiko.
    """

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """Return (file descriptor to write the stream into, catch_up), or None when each chunk must
        go through `write` (e.g. a bandwidth limit). `catch_up()` is called a few times a second
        while the stream is written and once after it ended (so whatever the sink does with the
        bytes, such as hashing them, is complete when get returns); what it raises stops the stream."""
        ...


@dataclass(frozen=True)
class RemoteResult:
    """Outcome of a remote script that exited 0."""

    script: str
    stdout: str
    stderr: str
    returncode: int = 0

    def json(self) -> Any:
        """Return the last JSON document the script printed on stdout.

        Raise RemoteStepError if stdout holds no JSON document.
        """
        for line in reversed(self.stdout.strip().splitlines()):
            line = line.strip()
            if line.startswith(("{", "[")):
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    break
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as err:
            raise RemoteStepError(
                self.script, self.returncode, self.stderr[-2000:],
                message=f"remote step {self.script} printed no JSON result",
                hint="this is a bug in the remote script; re-run with -v to see its output",
            ) from err


class Tunnel(Protocol):
    """A TCP connection opened through the host's SSH connection (an SSH direct-tcpip channel):
    bytes to and from `address:port` as the host itself reaches it."""

    def sendall(self, data: bytes, /) -> None:
        ...

    def recv(self, size: int, /) -> bytes:
        """Return up to `size` bytes; b"" when the peer closed. Raise TimeoutError (socket.timeout)."""
        ...

    def settimeout(self, timeout: float | None, /) -> None:
        ...

    def close(self) -> None:
        ...


class Host(Protocol):
    """A connected machine. Every method raises a typed JujuBackupError on failure."""

    streams_via: str
    """How the last get/put moved: "openssh", "paramiko", or "paramiko (why OpenSSH was not used)"."""

    @property
    def name(self) -> str:
        """Display name: the alias or address the operator gave."""
        ...

    @property
    def address(self) -> str:
        """The IP/hostname actually connected to."""
        ...

    def run(
        self,
        script: str,
        text: str,
        *,
        sudo: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
    ) -> RemoteResult:
        """Run bash script `text` (named `script` for errors) on the host, as root via `sudo -n` if `sudo`.

        The script text travels on the channel's stdin (never in argv). Return its RemoteResult; raise
        RemoteStepError(script, rc, stderr tail) when it exits non-zero and `check` is true.
        """
        ...

    def run_detached(
        self,
        script: str,
        text: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> RemoteResult:
        """Run a long script detached from the SSH session (systemd-run/setsid) and poll until it ends.

        The script survives a dropped connection (its own EXIT traps restart what it stopped).
        `on_stderr` receives new stderr lines while polling. Same result/error contract as `run`.
        """
        ...

    def run_stream(
        self, script: str, text: str, source: Readable, *, progress: Progress | None = None
    ) -> RemoteResult:
        """Run bash script `text` as root with `source` (read to EOF) streamed to its stdin after it.

        Same result/error contract as `run`; ConnectError when the connection drops mid-stream. An
        exception raised by `source.read` ends the script's input, waits for it and propagates."""
        ...

    def get(
        self, remote_path: str, sink: BinaryIO, *, offset: int = 0, progress: Progress | None = None,
        size: int | None = None,
    ) -> int:
        """Stream remote_path (read as root) from byte `offset` into `sink`; return bytes written.
        `size` (the bytes expected, when known) lets a small stream skip a second connection. A sink
        with a `direct_file()` (DirectSink) may be written through its file descriptor instead."""
        ...

    def put(
        self, source: Readable, remote_path: str, *, offset: int = 0, mode: int = 0o600,
        progress: Progress | None = None, on_sha256: Callable[[str], None] | None = None,
        size: int | None = None,
    ) -> int:
        """Stream `source` (`size` bytes, when known) into remote_path (written as root, created with
        `mode`), appending at `offset` (the remote file is truncated to `offset` first); return bytes
        written. With `on_sha256`, the host hashes the whole file once written (same command) and
        passes the hex digest to it."""
        ...

    def open_tcp(self, address: str, port: int, *, timeout: float = 10) -> Tunnel:
        """Open a TCP connection to `address:port` FROM the host (through its SSH connection, so
        a jump host in between works); return it. Raise ConnectError when the host cannot open it."""
        ...

    def close(self) -> None:
        ...


class Connector(Protocol):
    """Turns the operator's connection settings into connected Hosts. Built once by the CLI
    (GlobalOptions.connector) and handed to the operations, which never build a Host themselves."""

    @property
    def settings(self) -> ConnectionSettings:
        """The connection settings this connector was built from."""
        ...

    def with_settings(self, settings: ConnectionSettings) -> Connector:
        """Return a Connector of the same kind over other settings (`run`: each controller of a
        fleet has its own hosts and ssh settings)."""
        ...

    def targets(self) -> list[SSHTarget]:
        """Return every target to try, in order (-H hosts, then -c's endpoints). Raise UsageError
        (exit 2) when there is none or a value is malformed, NotFoundError for an unknown controller."""
        ...

    def target(self, value: str) -> SSHTarget:
        """Given one `[user@]host[:port]` or alias, return its resolved target. Raise UsageError."""
        ...

    def machine_target(self, address: str) -> SSHTarget:
        """Given a Juju machine's address, return how to reach it as Juju does (user ubuntu unless
        the ssh config or -H says otherwise, the Juju client's key and known_hosts too). Raise
        UsageError for a malformed address."""
        ...

    def connect(self, target: SSHTarget) -> Host:
        """Return a connected Host for `target`. Raise ConnectError (exit 3), HostKeyChangedError
        (exit 3, never a reason to try another host)."""
        ...
