"""FakeHost / FakeConnector: the Host seam without SSH or root, for unit tests of a verb's whole flow.

A FakeHost runs only the remote scripts it was told about (`expect`); any other script fails the test
at once (UnexpectedScript, an AssertionError that no operation catches as a JujuBackupError). A script
is either answered with a canned Reply, or (LOCAL) run by the local bash exactly as SSHHost runs it
on the host (the same wrapper; extra stdin after it), as the current user and without
sudo: scripts that only touch a directory under the fake's `root` (the catalog scripts with
--backup-dir there) run for real. get/put read and write files under `root` only, with the same
writer command SSHHost.put runs. tests/unit/test_host_contract.py holds it to the Host contract;
tests/host/test_host_contract_ssh.py runs the same cases against a real SSHHost.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from jujubackup.errors import ConnectError, NotFoundError, RemoteStepError
from jujubackup.host.base import Host, Progress, Readable, RemoteResult, Tunnel
from jujubackup.host.channel import STDERR_KEEP, put_writer, script_command, wrap_script
from jujubackup.host.target import SSHTarget
from jujubackup.settings import ConnectionSettings

CHUNK = 1 << 16


class UnexpectedScript(AssertionError):
    """The code under test ran a remote script (or used a path) the test did not allow."""


@dataclass(frozen=True)
class Reply:
    """A canned outcome of a remote script."""

    stdout: str = ""
    stderr: str = ""
    returncode: int = 0


LOCAL = "local"
"""Run the script with the local bash (no sudo), as SSHHost would run it on the host."""

Behaviour = Reply | Callable[[str, bytes], Reply] | str


def run_local(text: str, stdin: bytes = b"") -> Reply:
    """Run script `text` with the local bash as SSHHost runs it on a host (the same command,
    channel.script_command, and wrapper, `stdin` after it); return its outcome."""
    wrapped = wrap_script(text)
    done = subprocess.run(["sh", "-c", script_command(wrapped, "fake")], input=wrapped + stdin,
                          capture_output=True, timeout=120, check=False)
    return Reply(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), done.returncode)


def rooted(root: Path, *paths: str) -> Callable[[str, bytes], Reply]:
    """Return a behaviour that runs the script locally with each of the host `paths` it names (e.g.
    /var/lib/juju/agents) moved under `root`: the fake host's own file tree."""

    def run(text: str, stdin: bytes) -> Reply:
        for path in paths:
            text = text.replace(path, f"{root}{path}")
        return run_local(text, stdin)

    return run


@dataclass
class FakeHost:
    """A Host whose scripts are canned or run locally; files live under `root`."""

    name: str
    root: Path
    scripts: dict[str, Behaviour] = field(default_factory=dict)
    address: str = ""
    streams_via: str = "fake"
    notices: tuple[str, ...] = ()
    ran: list[str] = field(default_factory=list)
    closed: bool = False
    direct_gets: int = 0
    """How many gets wrote into a DirectSink's file through its descriptor."""
    direct_puts: int = 0
    """How many puts read a DirectFile source's file through its descriptor."""
    direct_streams: int = 0
    """How many run_streams read a DirectFile source's file through its descriptor."""
    put_sent: list[int] = field(default_factory=list)
    """The bytes each put sent (also a put its source's check stopped: what reached the host)."""

    def expect(self, script: str, behaviour: Behaviour = LOCAL) -> FakeHost:
        """Allow `script` (by the name the code gives it) with this behaviour; return self."""
        self.scripts[script] = behaviour
        return self

    def _behaviour(self, script: str) -> Behaviour:
        if script not in self.scripts:
            raise UnexpectedScript(f"{self.name}: remote script {script!r} was not expected "
                                   f"(expected: {', '.join(sorted(self.scripts)) or 'none'})")
        return self.scripts[script]

    def _path(self, remote_path: str) -> Path:
        path = Path(remote_path)
        if not path.is_absolute() or not path.resolve().is_relative_to(self.root.resolve()):
            raise UnexpectedScript(f"{self.name}: {remote_path} is outside the fake host's root {self.root}")
        return path

    def _reply(self, script: str, text: str, stdin: bytes) -> Reply:
        behaviour = self._behaviour(script)
        self.ran.append(script)
        if isinstance(behaviour, Reply):
            return behaviour
        if callable(behaviour):
            return behaviour(text, stdin)
        return run_local(text, stdin)

    def run(self, script: str, text: str, *, sudo: bool = True, stdin: bytes | None = None,
            timeout: float | None = None, check: bool = True) -> RemoteResult:
        reply = self._reply(script, text, stdin or b"")
        if check and reply.returncode != 0:
            raise RemoteStepError(script, reply.returncode, reply.stderr[-STDERR_KEEP:], host=self.name)
        return RemoteResult(script, reply.stdout, reply.stderr, reply.returncode)

    def run_detached(self, script: str, text: str, *, poll: float = 0.5, timeout: float | None = None,
                     on_stderr: Callable[[str], None] | None = None) -> RemoteResult:
        result = self.run(script, text, check=False)
        if on_stderr is not None:
            for line in result.stderr.splitlines():
                on_stderr(line)
        if result.returncode != 0:
            raise RemoteStepError(script, result.returncode, result.stderr[-STDERR_KEEP:], host=self.name)
        return result

    def run_stream(self, script: str, text: str, source: Readable, *,
                   progress: Progress | None = None) -> RemoteResult:
        direct_file = getattr(source, "direct_file", None)
        direct = direct_file() if callable(direct_file) else None
        if direct is None:
            data = _read_all(source, progress)
        else:  # like SSHHost over OpenSSH: the script in argv, `ssh` reading the file itself
            self.direct_streams += 1
            parts: list[bytes] = []
            _read_direct(direct, parts, progress)
            data = b"".join(parts)
        return self.run(script, text, stdin=data)

    def get(self, remote_path: str, sink: BinaryIO, *, offset: int = 0, progress: Progress | None = None,
            size: int | None = None) -> int:
        path = self._path(remote_path)
        if not path.is_file():
            raise NotFoundError(f"{remote_path} not found on {self.name}")
        # like SSHHost over OpenSSH: a DirectSink's file is written through its descriptor, with
        # catch_up called between chunks and once at the end (host.base.DirectSink)
        direct_file = getattr(sink, "direct_file", None)
        direct = direct_file() if callable(direct_file) else None
        self.direct_gets += direct is not None
        with path.open("rb") as src:
            src.seek(offset)
            moved = 0
            while chunk := src.read(CHUNK):
                if direct is not None:
                    _write_fd(direct[0], chunk)
                    direct[1]()
                else:
                    sink.write(chunk)
                moved += len(chunk)
                if progress is not None:
                    progress(len(chunk))
        if direct is not None:
            direct[1]()
        return moved

    def put(self, source: Readable, remote_path: str, *, offset: int = 0, mode: int = 0o600,
            progress: Progress | None = None, on_sha256: Callable[[str], None] | None = None,
            size: int | None = None) -> int:
        self._path(remote_path)
        direct_file = getattr(source, "direct_file", None)
        direct = direct_file() if callable(direct_file) else None
        if direct is None:
            data = _read_all(source, progress)
        else:  # like SSHHost over OpenSSH (host.base.DirectFile): the file read through its
            # descriptor, check() between chunks and once after; what it raises stops the stream,
            # and what was sent stays in the remote file (the writer ends with its input)
            self.direct_puts += 1
            parts: list[bytes] = []
            try:
                _read_direct(direct, parts, progress)
            except BaseException:
                self._write(b"".join(parts), remote_path, offset, mode, False)
                raise
            data = b"".join(parts)
        done = self._write(data, remote_path, offset, mode, on_sha256 is not None)
        if on_sha256 is not None:
            digest = done.stdout.decode().split()[0]
            assert digest == hashlib.sha256(Path(remote_path).read_bytes()).hexdigest()
            on_sha256(digest)
        return len(data)

    def _write(self, data: bytes, remote_path: str, offset: int, mode: int,
               sha256: bool) -> subprocess.CompletedProcess[bytes]:
        """Run SSHHost.put's writer command with `data` on stdin; return how it ended. Raise
        RemoteStepError when it failed."""
        self.put_sent.append(len(data))
        done = subprocess.run(
            ["bash", "--norc", "-c", put_writer(), "jujubackup-put", remote_path, str(offset), f"{mode:o}",
             "1" if sha256 else "0"],
            input=data, capture_output=True, check=False,
        )
        if done.returncode != 0:
            raise RemoteStepError("put", done.returncode, done.stderr.decode(errors="replace"),
                                  host=self.name)
        return done

    def open_tcp(self, address: str, port: int, *, timeout: float = 10) -> Tunnel:
        raise UnexpectedScript(f"{self.name}: open_tcp({address}, {port}) is not faked")

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_direct(direct: tuple[int, Callable[[], None]], parts: list[bytes],
                 progress: Progress | None) -> None:
    """Read a DirectFile's descriptor to its end into `parts`, calling its check between chunks and
    once after, as SSHHost's OpenSSH streams do (what check raises propagates: `parts` then holds
    what was sent)."""
    fd, check = direct
    while chunk := os.read(fd, CHUNK):
        parts.append(chunk)
        if progress is not None:
            progress(len(chunk))
        check()
    check()


def _read_all(source: Readable, progress: Progress | None) -> bytes:
    parts = []
    while chunk := source.read(CHUNK):
        parts.append(chunk)
        if progress is not None:
            progress(len(chunk))
    return b"".join(parts)


class FakeConnector:
    """A Connector over FakeHosts by name: `-H NAME` values must name one of them (or one listed in
    `down`, which refuses the connection); anything else fails the test. Call it with the settings
    (it is its own factory: `cli.main(argv, make_connector=fake)`)."""

    def __init__(self, hosts: Mapping[str, FakeHost], down: tuple[str, ...] = (),
                 settings: ConnectionSettings | None = None) -> None:
        self.hosts = dict(hosts)
        self.down = down
        self._settings = settings or ConnectionSettings(hosts=tuple(self.hosts))
        self.connected: list[str] = []
        self.views: list[ConnectionSettings] = []
        """The settings of every with_settings view made (shared by the views)."""

    def __call__(self, settings: ConnectionSettings) -> FakeConnector:
        self._settings = settings
        return self

    @property
    def settings(self) -> ConnectionSettings:
        return self._settings

    def with_settings(self, settings: ConnectionSettings) -> FakeConnector:
        """A view over the same hosts (and the same `connected` list) with other settings."""
        view = FakeConnector({}, self.down, settings)
        view.hosts, view.connected, view.views = self.hosts, self.connected, self.views
        self.views.append(settings)
        return view

    def targets(self) -> list[SSHTarget]:
        return [self.target(value) for value in self._settings.hosts]

    def target(self, value: str) -> SSHTarget:
        if value not in self.hosts and value not in self.down:
            raise UnexpectedScript(f"host {value!r} is not a fake host ({', '.join(self.hosts)})")
        return SSHTarget(name=value, hostname=value, user="root")

    def machine_target(self, address: str) -> SSHTarget:
        return self.target(address)

    def connect(self, target: SSHTarget) -> Host:
        if target.name in self.down:
            raise ConnectError(f"connection refused by {target.name}")
        self.connected.append(target.name)
        return self.hosts[target.name]
