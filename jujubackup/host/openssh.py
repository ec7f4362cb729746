"""Bulk streams through the OpenSSH client binary (`ssh`), pinned to the host key paramiko verified.

paramiko spends ~1.6x OpenSSH's CPU per byte sent (a `send` syscall and Python packet framing per
32 KiB packet); on a busy controller or a small VM that is the difference between ~0.6x and ~0.9x of
`ssh host cat`. So archives move through `ssh` when it is installed and accepts the same key and
identity the control connection used; everything else (scripts, polling) stays on paramiko.

* The host key: `ssh` gets a private known_hosts file holding exactly the key the paramiko
  connection accepted (under a fixed HostKeyAlias) and `StrictHostKeyChecking=yes`, so it can never
  talk to a different server than the one already checked.
* `-F /dev/null`: the target was already resolved from the operator's ssh config; nothing else of it
  (SendEnv, ProxyCommand, ControlMaster) is applied a second time, except its Ciphers (as `ssh -G`
  resolved them, SSHTarget.ciphers).
* Ciphers: AES-GCM first when the config chooses none (OpenSSH's default, chacha20-poly1305, costs
  ~3x the client CPU per byte on AES-NI machines: 1 GiB over loopback took 1.0 user-s against 0.35),
  with every other default cipher after it for a server that refuses GCM. A config's own Ciphers
  wins. (A config line equal to ssh's default reads as none, see host/sshresolve.py.)
* `BatchMode=yes`: no prompt ever; a key that needs a passphrase or a password login makes `ssh`
  fail before any byte moved, and the caller falls back to paramiko.
* No secret is in argv: host, port, user, key *paths* and option values only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

from jujubackup.host.base import Readable
from jujubackup.host.target import SSHTarget

CHUNK = 1 << 20
PIN_ALIAS = "jujubackup-pinned-host"
F_SETPIPE_SZ = 1031  # Linux fcntl; elsewhere the call fails and the default pipe size is kept
# The same preference as the paramiko transport: AES-GCM first (AES-NI on both ends is the norm for
# controllers), then OpenSSH's own defaults.
CIPHERS = (
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,"
    "aes128-ctr,aes192-ctr,aes256-ctr"
)
SSH_FAILED = 255
READY = b"R"
DIRECT_POLL = 0.1  # seconds between progress updates (and checks) of put_file


class Unusable(Exception):
    """`ssh` failed before any byte of the stream moved (no binary, key refused, ...)."""


@dataclass(frozen=True)
class Finished:
    """How a stream's remote command ended: exit code, stderr (remote and ssh's own), stdout tail."""

    returncode: int
    stderr: str
    stdout: bytes = b""


def host_key_algorithms(key_type: str) -> str:
    """Given a known_hosts key type, return the HostKeyAlgorithms that make `ssh` ask for that key."""
    if key_type == "ssh-rsa":
        return "rsa-sha2-512,rsa-sha2-256"
    return key_type


def known_hosts_line(key_type: str, key_base64: str) -> str:
    """Given the verified host key, return the one known_hosts line that pins it under PIN_ALIAS."""
    return f"{PIN_ALIAS} {key_type} {key_base64}\n"


def ciphers(target: SSHTarget) -> str:
    """Given a target, return the Ciphers value for its streams: the list the operator's ssh config
    chose, else CIPHERS (AES-GCM first, every other default cipher still allowed: the server may not
    offer GCM)."""
    return ",".join(target.ciphers) if target.ciphers else CIPHERS


def ssh_argv(binary: str, target: SSHTarget, known_hosts: Path, key_type: str) -> list[str]:
    """Given the ssh binary, a target without a jump host, the pinned known_hosts file and the key
    type in it, return the argv (up to and including the host name) that runs one remote command."""
    argv = [
        binary, "-F", "/dev/null", "-T", "-x", "-a",
        "-p", str(target.port), "-l", target.user,
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f'UserKnownHostsFile="{known_hosts}"',
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"HostKeyAlias={PIN_ALIAS}",
        "-o", f"HostKeyAlgorithms={host_key_algorithms(key_type)}",
        "-o", "UpdateHostKeys=no",
        "-o", "CheckHostIP=no",
        "-o", "PasswordAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no",
        "-o", f"ConnectTimeout={max(1, round(target.connect_timeout))}",
        "-o", f"ServerAliveInterval={max(1, target.keepalive)}",
        "-o", "ServerAliveCountMax=3",
        "-o", f"Ciphers={ciphers(target)}",
        "-o", "LogLevel=ERROR",
    ]
    if target.identity_files:  # paramiko then offers these keys only, and no agent
        argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
        for path in target.identity_files:
            argv += ["-i", str(path)]
    return [*argv, "--", target.hostname]


class OpenSSHStreams:
    """Runs stream commands on one target through `ssh`. Build with `OpenSSHStreams.start`."""

    def __init__(self, argv: list[str], workdir: Path) -> None:
        self.argv = argv
        self.workdir = workdir

    @classmethod
    def start(cls, target: SSHTarget, key_type: str, key_base64: str) -> OpenSSHStreams:
        """Given a target and the host key its control connection verified, return the streams.

        Raise Unusable if there is no `ssh` binary or the target goes through a jump host (ProxyJump
        hops have their own keys and identities; those streams stay on paramiko)."""
        binary = shutil.which("ssh")
        if binary is None:
            raise Unusable("no ssh client binary on PATH")
        if target.jump is not None:
            raise Unusable("the target is reached through a jump host")
        workdir = Path(tempfile.mkdtemp(prefix="jujubackup-ssh-"))
        known = workdir / "known_hosts"
        known.write_text(known_hosts_line(key_type, key_base64), encoding="ascii")
        return cls(ssh_argv(binary, target, known, key_type), workdir)

    def close(self) -> None:
        """Remove the pinned known_hosts file. Safe to call twice."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _spawn(
        self, command: str, stdin: int | IO[bytes], stdout: int = subprocess.PIPE
    ) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
        errors = tempfile.TemporaryFile(dir=self.workdir)  # noqa: SIM115 - closed by _reap
        try:
            proc = subprocess.Popen(
                [*self.argv, command], stdin=stdin, stdout=stdout, stderr=errors, bufsize=0,
            )
        except OSError as err:
            errors.close()
            raise Unusable(f"cannot run ssh: {err}") from err
        return proc, errors

    def get(
        self, command: str, sink: BinaryIO, progress: Callable[[int], None] | None, timeout: float
    ) -> tuple[int, Finished]:
        """Run `command` (which writes the stream on stdout) and copy its output into `sink`; when
        the sink offers its file (host.base.DirectSink), `ssh` writes into it instead (get_file).

        Return (bytes written, how it ended). Raise Unusable if `ssh` failed before any byte arrived;
        an exception raised by `sink.write` kills `ssh` and propagates.
        """
        direct = direct_sink(sink)
        if direct is not None:
            return self.get_file(command, *direct, progress, timeout)
        proc, errors = self._spawn(command, subprocess.DEVNULL)
        moved = 0
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            _widen_pipe(fd)
            while data := os.read(fd, CHUNK):
                sink.write(data)
                moved += len(data)
                if progress is not None:
                    progress(len(data))
            done = _finish(proc, errors, timeout)
        finally:
            _reap(proc, errors)
        if moved == 0 and done.returncode == SSH_FAILED:
            raise Unusable(_last_line(done.stderr))
        return moved, done

    def get_file(
        self, command: str, fd: int, check: Callable[[], None], progress: Callable[[int], None] | None,
        timeout: float,
    ) -> tuple[int, Finished]:
        """Like get, with `ssh` writing the stream into the open file `fd` itself (as
        `ssh host cmd > file` does: no copy through this process; `fd` is its stdout, nothing else of
        the file reaches it). Progress is the growth of the file, read every DIRECT_POLL seconds;
        `check()` is called after each poll and once more after `ssh` ended.

        Return (bytes written, how it ended). Raise Unusable if `ssh` failed before any byte arrived
        (the file did not grow). What `check()` raises kills `ssh` and propagates.
        """
        start = os.fstat(fd).st_size
        proc, errors = self._spawn(command, subprocess.DEVNULL, stdout=fd)
        try:
            moved = _watch(proc, lambda: os.fstat(fd).st_size - start, progress, check)
            done = _finish(proc, errors, timeout)
        finally:
            _reap(proc, errors)
        if moved == 0 and done.returncode == SSH_FAILED:
            raise Unusable(_last_line(done.stderr))
        return moved, done

    def put(
        self, command: str, source: Readable, progress: Callable[[int], None] | None, timeout: float
    ) -> tuple[int, Finished]:
        """Run `command` (which must print READY on stdout before it reads stdin) and stream `source`
        into it until EOF or until the command exits.

        Return (bytes sent, how it ended; stdout after READY in it). Raise Unusable if `ssh` failed
        before the command started (nothing was read from `source`). An exception raised by
        `source.read` ends the remote command's input, waits for it and propagates.
        """
        proc, errors = self._spawn(command, subprocess.PIPE)
        moved = 0
        try:
            assert proc.stdin is not None and proc.stdout is not None
            if proc.stdout.read(1) != READY:
                done = _finish(proc, errors, timeout)
                if done.returncode == SSH_FAILED:
                    raise Unusable(_last_line(done.stderr))
                return 0, done
            fd = proc.stdin.fileno()
            _widen_pipe(fd)
            try:
                while data := source.read(CHUNK):
                    _write_all(fd, data)
                    moved += len(data)
                    if progress is not None:
                        progress(len(data))
            except BrokenPipeError:
                pass  # the command (or ssh) exited: its exit code and stderr tell why
            except BaseException:
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    proc.stdin.close()
                    proc.wait(timeout)
                raise
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            done = _finish(proc, errors, timeout)
        finally:
            _reap(proc, errors)
        return moved, done

    def put_file(
        self, command: str, fd: int, check: Callable[[], None], progress: Callable[[int], None] | None,
        timeout: float,
    ) -> tuple[int, Finished]:
        """Like put, with `ssh` reading the open file `fd` itself from its current offset to its end
        (as `ssh host cmd < file` does: no copy through this process). Progress is the movement of
        the shared file offset, read every DIRECT_POLL seconds; `check()` is called after each poll
        and once more after `ssh` ended (as in get_file: `_watch`).

        Return (bytes sent, how it ended). Raise Unusable if `ssh` failed before the command started
        (the offset is put back: nothing was sent). What `check()` raises kills `ssh` (the remote
        command loses its session and ends) and propagates.
        """
        start = os.lseek(fd, 0, os.SEEK_CUR)
        proc, errors = self._spawn(command, fd)
        try:
            assert proc.stdout is not None
            if proc.stdout.read(1) != READY:
                done = _finish(proc, errors, timeout)
                os.lseek(fd, start, os.SEEK_SET)  # what ssh may have read went nowhere
                if done.returncode == SSH_FAILED:
                    raise Unusable(_last_line(done.stderr))
                return 0, done
            moved = _watch(proc, lambda: os.lseek(fd, 0, os.SEEK_CUR) - start, progress, check)
            done = _finish(proc, errors, timeout)
        finally:
            _reap(proc, errors)
        return moved, done


def _watch(
    proc: subprocess.Popen[bytes], position: Callable[[], int], progress: Callable[[int], None] | None,
    check: Callable[[], None],
) -> int:
    """Given a running `ssh` that reads or writes a file itself and how far it got (`position()`:
    bytes from where it started), wait for it to end; every DIRECT_POLL seconds pass the growth to
    `progress` and call `check()`, and both once more after it ended (so a check such as get's
    hashing behind the writer has seen every byte). Return the bytes moved. What `check()` raises
    propagates (the caller kills `ssh`)."""
    moved = 0
    ended = False
    while not ended:
        try:
            proc.wait(DIRECT_POLL)
            ended = True
        except subprocess.TimeoutExpired:
            pass
        now = position()
        if progress is not None and now > moved:
            progress(now - moved)
        moved = max(moved, now)
        check()
    return moved


def direct_sink(sink: object) -> tuple[int, Callable[[], None]] | None:
    """Given get's sink, return its direct_file() when it has one (host.base.DirectSink), else None."""
    direct = getattr(sink, "direct_file", None)
    return cast("tuple[int, Callable[[], None]] | None", direct()) if callable(direct) else None


def _widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (64 KiB by default): 16x fewer wakeups of both ends. Where there
    is no such fcntl (not Linux, or no fcntl at all), the default stays."""
    with contextlib.suppress(OSError, ImportError):
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, CHUNK)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _finish(proc: subprocess.Popen[bytes], errors: IO[bytes], timeout: float) -> Finished:
    """Read what is left on stdout, wait for `ssh` (at most `timeout` s) and collect its stderr."""
    out = (proc.stdout.read() or b"") if proc.stdout is not None else b""
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    errors.seek(0)
    return Finished(rc, errors.read().decode(errors="replace"), out)


def _reap(proc: subprocess.Popen[bytes], errors: IO[bytes]) -> None:
    """Kill `ssh` if it still runs (Ctrl-C, a failed sink), wait for it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    errors.close()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "ssh exited 255"
