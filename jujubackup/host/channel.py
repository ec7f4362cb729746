"""Byte plumbing of SSHHost's exec channels: how a script travels on its stdin, put's remote
writer, the stdin wrappers (prefixed, counted) and the paramiko channel helpers that survive a
connection that just died."""

from __future__ import annotations

import contextlib
import re
import shlex
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, cast

import paramiko

from jujubackup import scripts
from jujubackup.host.base import Readable

CHUNK = 1 << 20
STDERR_KEEP = 64 * 1024
"""How much of a remote step's stderr a RemoteStepError keeps (the tail)."""
SSH_FAILED = 255
"""The OpenSSH client's exit code when the connection itself failed."""


@lru_cache(maxsize=1)
def put_writer() -> str:
    """Return put's remote writer (remote_scripts/put-writer.sh.j2), run as `bash --norc -c WRITER
    jujubackup-put PATH OFFSET MODE HASH` (bash_c)."""
    return scripts.render("put-writer")


class SSHFailed(Exception):
    """The OpenSSH client exited 255 (or was killed) mid-stream: the connection dropped."""

    def __init__(self, stderr: str) -> None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        super().__init__(f"ssh: {lines[-1]}" if lines else "")


def script_command(wrapped: bytes, script: str) -> str:
    """Given a wrapped script (wrap_script) and its name, return the remote command that reads
    exactly those bytes first from its stdin and runs them, the bytes after them staying the
    script's own stdin, `$0` naming the script.

    `bash -s` reads a piped script one byte at a time, one read(2) per byte: a 23 KB restore step
    took 51 ms to read where `head -c N` (which never reads past N bytes) takes 7 ms. The script
    still travels on stdin, never in argv: only its size is in the command line.
    """
    reader = f'eval "$(head -c {len(wrapped)})"'
    name = "jujubackup-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", script).strip("-")[:40] or "script")
    return bash_c(reader, name)


def bash_c(text: str, *args: str) -> str:
    """Return the remote command line running bash `text` with `args` ($0 first).

    --norc: sshd runs a command through the login shell, which execs a lone `bash -c` at shell
    level 0, and Debian's bash (SSH_SOURCE_BASHRC) then reads ~/.bashrc when SSH_CLIENT is set: the
    login user's rc file would run inside our scripts (80 ms for a root with pyenv's, measured), and
    whatever it prints would mix with their output.
    """
    return " ".join(["bash", "--norc", "-c", shlex.quote(text), *map(shlex.quote, args)])


def wrap_script(text: str) -> bytes:
    """Return script text wrapped so bash parses it whole before running any of it: a script cut
    short on its way runs nothing (a syntax error)."""
    return ("{\n" + text.rstrip("\n") + "\n}; exit $?\n").encode()


class ExecRefused(Exception):
    """sshd answered an exec request with failure while the connection stayed up."""


def start_command(transport: paramiko.Transport, command: str, timeout: float) -> paramiko.Channel:
    """Open a session channel on `transport` and start `command` on it; return the channel.

    Raise ExecRefused (the channel closed) when sshd refused the request and the transport is still
    up: OpenSSH (session.c, session_exec_req) answers "exec" after its fork, with failure when its
    pipe or fork fails, so the command never started and sending it again cannot run it twice;
    paramiko reports that answer as "Channel closed." with no transport exception. Raise paramiko's
    SSHException, OSError or EOFError when the channel cannot open or the connection dropped."""
    chan = transport.open_session(timeout=timeout)
    try:
        chan.exec_command(command)
    except (paramiko.SSHException, OSError, EOFError) as err:
        close_quietly(chan)
        if transport.is_active() and isinstance(err, paramiko.SSHException):
            raise ExecRefused(str(err) or type(err).__name__) from err
        raise
    return chan


def feed_in_background(chan: paramiko.Channel, payload: bytes) -> threading.Thread:
    """Send `payload` to the channel's stdin, then EOF, on a daemon thread; return it started. A
    script may exit before reading it all: the send's error then ends the thread quietly."""

    def feed() -> None:
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            for start in range(0, len(payload), CHUNK):
                chan.sendall(payload[start:start + CHUNK])
            chan.shutdown_write()

    sender = threading.Thread(target=feed, daemon=True)
    sender.start()
    return sender


def drain_stdout(chan: paramiko.Channel) -> str:
    """Return what the channel's stdout holds now, decoded (invalid bytes replaced)."""
    return _drain(chan.recv_ready, chan.recv)


def drain_stderr(chan: paramiko.Channel) -> str:
    """Return what the channel's stderr holds now, decoded (invalid bytes replaced)."""
    return _drain(chan.recv_stderr_ready, chan.recv_stderr)


def _drain(ready: Callable[[], bool], recv: Callable[[int], bytes]) -> str:
    parts = []
    while ready():
        parts.append(recv(CHUNK))
    return b"".join(parts).decode(errors="replace")


def close_quietly(chan: paramiko.Channel) -> None:
    """Close a channel; on a connection that just died, paramiko's close raises (EOFError, socket
    errors) before its transport thread noticed: that must not hide the ConnectError being raised."""
    with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
        chan.close()


def why_closed(transport: paramiko.Transport | None) -> BaseException | None:
    """Given a client's transport (None: gone), return why it no longer runs, for an error message:
    the exception its thread ended with (paramiko Transport.run saves it: EOFError when sshd closed
    the connection, an OSError for a reset, an SSHException), else a ConnectionError saying it was
    closed on this side; None while it is active."""
    if transport is not None and transport.is_active():
        return None
    saved = transport.get_exception() if transport is not None else None
    if isinstance(saved, EOFError):
        return ConnectionError("the server closed the connection")
    return saved or ConnectionError("the connection was closed on this side")


def lost_detail(err: BaseException | None, transport: paramiko.Transport | None) -> str:
    """Given the error a lost connection raised here (None: none) and the connection's transport,
    return what to say after "connection ... lost while ...": ": " and the error, then why the
    transport stopped (why_closed) when it has; "" when neither says anything."""
    said = [str(e) or type(e).__name__ for e in (err, why_closed(transport)) if e is not None]
    return ": " + "; ".join(said) if said else ""


class Prefixed:
    """A read-only stream: `head` bytes, then what `source` reads."""

    def __init__(self, head: bytes, source: Readable) -> None:
        self.head = head
        self.source = source

    def read(self, size: int = CHUNK) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        return self.source.read(size)


class Counted:
    """A read-only stream over `source` that counts the bytes read (or sent directly from the
    file of a DirectFile source)."""

    def __init__(self, source: Readable) -> None:
        self.source = source
        self.moved = 0

    def read(self, size: int = CHUNK) -> bytes:
        data = self.source.read(size)
        self.moved += len(data)
        return data

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """The source's direct_file() when it has one (host.base.DirectFile), else None."""
        direct = getattr(self.source, "direct_file", None)
        return cast("tuple[int, Callable[[], None]] | None", direct()) if callable(direct) else None


def sendall_view(chan: paramiko.Channel, data: bytes) -> None:
    """Send all of `data` packet by packet through a memoryview.

    paramiko's own sendall re-slices the remaining bytes after every ~32 KiB packet: 16 copies of
    a 1 MiB chunk, a third of the sender's CPU time. Raise EOFError if the channel closes.
    """
    view = memoryview(data)
    while view:
        sent = chan.send(view)  # type: ignore[arg-type]  # paramiko packs any buffer
        if not sent:
            raise EOFError("the channel closed while sending")
        view = view[sent:]


def read_exact(stream: Any, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"short read ({len(data)} of {size} bytes)")
    return bytes(data)
