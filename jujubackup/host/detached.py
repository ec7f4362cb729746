"""The client side of a detached remote job (SSHHost.run_detached): the poller that is the job's
heartbeat, forwards its stderr and collects its result (remote_scripts/detached_poll.sh.j2)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paramiko

from jujubackup import scripts
from jujubackup.errors import ConnectError, RemoteStepError
from jujubackup.host.base import RemoteResult
from jujubackup.host.channel import (
    CHUNK,
    STDERR_KEEP,
    close_quietly,
    read_exact,
    script_command,
    wrap_script,
)

if TYPE_CHECKING:
    from jujubackup.host.ssh import SSHHost

DETACHED_BASE = "/run/jujubackup"
"""Where detached jobs keep their state (a tmpfs: a reboot forgets them)."""
POLL_STEP = 0.02
"""Seconds between the long poll's looks for the job's rc on the host (detached_poll.sh.j2)."""


def job_slug(script: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", script).strip("-")[:40] or "job"


class JobPoller:
    """Client side of remote_scripts/detached_poll.sh.j2: heartbeat, stderr forwarding, result."""

    def __init__(
        self, host: SSHHost, script: str, job_dir: str, on_stderr: Callable[[str], None] | None
    ) -> None:
        self.host = host
        self.script = script
        self.job_dir = job_dir
        self.on_stderr = on_stderr
        self.stderr = bytearray()
        self._partial = b""

    def wait(
        self, poll: float, timeout: float | None, heartbeat_timeout: float, launcher: str, payload: bytes
    ) -> RemoteResult:
        """Launch the job (`launcher`: detached.sh, fed `payload` = wrapper + job script) and poll it
        until it ends, in one session; return its RemoteResult or raise (see SSHHost.run_detached)."""
        text = scripts.render(
            "detached_poll", job_dir=self.job_dir, launcher=launcher,
            wait_steps=max(1, round(poll / POLL_STEP)), poll_step=POLL_STEP,
        )
        wrapped = wrap_script(text)
        chan, _early = self.host._exec_root(script_command(wrapped, "detached-poll"))
        chan.settimeout(self.host.io_timeout)
        stream = chan.makefile("rb")
        deadline = None if timeout is None else time.monotonic() + timeout
        aborted: str | None = None
        interrupted = False
        try:
            chan.sendall(wrapped + payload)
            self._launched(chan, stream)
            while True:
                command = "abort" if aborted else "poll"
                try:
                    rc = self._exchange(chan, stream, command)
                except KeyboardInterrupt:
                    interrupted, aborted = True, "interrupted"
                    continue
                if rc is not None:
                    break
                if aborted is None and deadline is not None and time.monotonic() > deadline:
                    aborted = f"timed out after {timeout:g}s"
            stdout = self._collect(chan, stream)
        except (OSError, paramiko.SSHException, EOFError, ValueError) as err:
            raise ConnectError(
                f"connection to {self.host.name} lost while {self.script} was running ({err or 'EOF'}); "
                f"the remote job will abort itself within {heartbeat_timeout:g}s and restore what it stopped",
                hint="check the network, then run `jujubackup status` to see the host's state",
            ) from err
        finally:
            close_quietly(chan)
        self._flush()
        if interrupted:
            raise KeyboardInterrupt
        stderr = self.stderr.decode(errors="replace")
        result = RemoteResult(self.script, stdout.decode(errors="replace"), stderr, rc)
        if aborted is not None:
            raise RemoteStepError(self.script, rc, stderr, host=self.host.name,
                                  message=f"remote step {self.script} on {self.host.name} {aborted}")
        if rc != 0:
            self.host._check_sudo(rc, stderr, True)
            raise RemoteStepError(self.script, rc, stderr[-STDERR_KEEP:], host=self.host.name)
        return result

    def _launched(self, chan: paramiko.Channel, stream: Any) -> None:
        """Read the launch's answer (`L <rc>`). Raise RemoteStepError (`<script> (launch)`, its rc
        and stderr) when it failed; ConnectError when sudo refused."""
        line = stream.readline()
        if line.startswith(b"L 0\n"):
            return
        # a failed launch, or no shell at all (sudo refused): its exit code and stderr say which
        rc = int(line.split()[1]) if line.startswith(b"L ") else chan.recv_exit_status()
        stderr = b""
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            while chunk := chan.recv_stderr(CHUNK):
                stderr += chunk
        text = stderr.decode(errors="replace")
        self.host._check_sudo(rc, text, True)
        raise RemoteStepError(f"{self.script} (launch)", rc, text[-STDERR_KEEP:], host=self.host.name)

    def _exchange(self, chan: paramiko.Channel, stream: Any, command: str) -> int | None:
        """Send one poll/abort; forward new stderr; return the job's rc once it has one."""
        chan.sendall(f"{command}\n".encode())
        header = self._line(stream)
        if header == "G":
            raise EOFError("the job's state dir disappeared")
        size = int(header.split()[1])
        if size:
            self._feed(read_exact(stream, size))
        status = self._line(stream).split()[1]
        return None if status == "-" else int(status)

    def _collect(self, chan: paramiko.Channel, stream: Any) -> bytes:
        chan.sendall(b"collect\n")
        size = int(self._line(stream).split()[1])
        return read_exact(stream, size)

    @staticmethod
    def _line(stream: Any) -> str:
        line = stream.readline()
        if not line:
            raise EOFError("the poller closed the channel")
        return str(line.decode().strip())

    def _feed(self, data: bytes) -> None:
        self.stderr += data
        del self.stderr[:-STDERR_KEEP]
        if self.on_stderr is None:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self.on_stderr(line.decode(errors="replace"))

    def _flush(self) -> None:
        if self.on_stderr is not None and self._partial:
            self.on_stderr(self._partial.decode(errors="replace"))
        self._partial = b""
