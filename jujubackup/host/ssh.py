"""SSHHost: the Host seam over a fabric.Connection (opened and checked by host/connection.py; this
package is the only one that imports fabric and paramiko).

* Host keys are checked against known_hosts files (host/connection.py): unknown keys are refused
  (exit 3) unless the target says `accept_new_host_key`, then recorded. A changed key is always
  refused, with HostKeyChangedError (a ConnectError) so that HA fallback (connect.connect_first)
  aborts instead of trying the next host. A key a `@revoked` line names is refused the same way
  (HostKeyRevokedError), also when another line lists it or --accept-new-host-key is given;
  `@cert-authority` lines are skipped and reported once in `SSHHost.notices` (host/knownhosts.py).
  Fingerprints are shown as OpenSSH does: `SHA256:<base64 without padding>`.
* A closed port is "connection refused by HOST:PORT" (+ " (alias)" when -H named an ssh config alias),
  on one line with a hint.
* Scripts travel on stdin, never in argv (channel.script_command), but put's writer and a run_stream
  of a file (restore-receive): fixed scripts, no secret; in argv so that `ssh` reads the file itself.
  When the login user's sudo needs a password (given once: host/sudo.py, jujubackup/sudopassword.py)
  it is `sudo -S` answered on the same stdin before the script is released; archives then move over
  this connection (the OpenSSH client cannot answer sudo).
* Long scripts run detached (remote_scripts/detached*.sh.j2) and are polled over one channel whose
  lines are the client's heartbeat: a dead client stops them and the remote job aborts itself.
* Archives move as raw exec-channel streams (`cat`/`tail -c +N`, `cat >>`, or a script reading its
  stdin: run_stream), 1 MiB at a time: through the OpenSSH client pinned to the verified host key
  when it works (host/openssh.py), else over paramiko with aes128-gcm preferred and its
  client-initiated rekey disabled on that connection (paramiko#822).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import select
import shlex
import time
from collections.abc import Callable
from typing import BinaryIO

import fabric
import paramiko

from jujubackup import scripts
from jujubackup.errors import ConnectError, NotFoundError, RemoteStepError
from jujubackup.host.base import Progress, Readable, RemoteResult, Tunnel
from jujubackup.host.channel import (
    CHUNK,
    SSH_FAILED,
    STDERR_KEEP,
    Counted,
    ExecRefused,
    Prefixed,
    SSHFailed,
    bash_c,
    close_quietly,
    drain_stderr,
    drain_stdout,
    feed_in_background,
    lost_detail,
    put_writer,
    script_command,
    sendall_view,
    start_command,
    wrap_script,
)
from jujubackup.host.connection import (
    HostKeyChangedError,
    HostKeyRevokedError,
    fingerprint,
    host_port,
    load_known_hosts,
    open_connection,
)
from jujubackup.host.detached import DETACHED_BASE, JobPoller, job_slug
from jujubackup.host.openssh import READY, OpenSSHStreams, Unusable
from jujubackup.host.sudo import SudoAuth, SudoPassword, answer, asks_password, check_sudo
from jujubackup.host.target import SSHTarget

__all__ = ["HostKeyChangedError", "HostKeyRevokedError", "SSHHost", "fingerprint"]

OPENSSH_MIN = 4 << 20
"""Streams known to be smaller stay on paramiko: a new OpenSSH connection costs ~0.25 s of handshake."""
EXEC_TRIES = 2
"""Exec requests sent per command while sshd refuses them on a live connection."""
EXEC_RETRY_PAUSE = 0.5


class SSHHost:
    """A connected controller (or spare) over SSH. Build it with `SSHHost.connect(target)`."""

    def __init__(self, target: SSHTarget, conn: fabric.Connection, jump: SSHHost | None = None) -> None:
        self.target = target
        self._conn = conn
        self._client: paramiko.SSHClient = conn.client
        self._jump = jump
        self.io_timeout = max(60.0, target.connect_timeout * 3)
        self._openssh: OpenSSHStreams | None = None
        self._openssh_off: str | None = None if target.stream_via != "paramiko" else "--transfer paramiko"
        self.streams_via = "none yet"
        self.notices: tuple[str, ...] = ()
        """Things the operator should hear about once (skipped @cert-authority known_hosts lines)."""
        self._sudo: SudoAuth | None = None
        """Set when this host's sudo is answered with a password (host/sudo.py)."""

    @classmethod
    def connect(cls, target: SSHTarget, sudo_password: SudoPassword | None = None) -> SSHHost:
        """Given a resolved target (and where the login user's sudo password comes from, if it
        needs one), return a connected SSHHost: a fabric.Connection opened by host/connection.py, a
        ProxyJump hop its own SSHHost whose direct-tcpip channel (opened here, with the connect
        timeout) is the socket. Raise ConnectError (exit 3) on failure, SudoPasswordError (exit 3)
        when sudo refuses the password."""
        jump: SSHHost | None = None
        sock = None
        if target.jump is not None:
            jump = cls.connect(target.jump)
            try:
                sock = jump._transport().open_channel(
                    "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0),
                    timeout=target.connect_timeout,
                )
            except (paramiko.SSHException, OSError) as err:
                jump.close()
                raise ConnectError(
                    f"jump host {target.jump.name} cannot reach {target.hostname}:{target.port}: {err}",
                    hint="check ProxyJump and the target address as seen from the jump host",
                ) from err
        try:
            known = load_known_hosts(target)
            conn = open_connection(target, sock, known)
        except ConnectError:
            if jump is not None:
                jump.close()
            raise
        host = cls(target, conn, jump)
        host.notices = tuple(dict.fromkeys((*(jump.notices if jump else ()), *known.notices)))
        try:
            host._setup_sudo(sudo_password)
        except BaseException:
            host.close()
            raise
        return host

    def _setup_sudo(self, password: SudoPassword | None) -> None:
        """Decide how this host's sudo runs: `sudo -n` (root needs none; no password given and none
        can be asked; or sudo does not ask: probed with `sudo -n true` before asking), else `sudo -S`
        answered with the password, checked once here with `true` so a wrong one fails before any
        step. Archives then move over this connection (the OpenSSH client cannot answer sudo).
        Raise SudoPasswordError, ConnectError."""
        if self.is_root or password is None or not password.can_ask:
            return
        who = f"{self.target.user}@{self.name}"
        if not password.given and not self._sudo_asks():
            return
        self._sudo = SudoAuth(password.get(who))
        if self.target.stream_via == "openssh":
            raise ConnectError(f"--transfer openssh cannot be used with {who}: its sudo asks for a password",
                               hint="use --transfer auto or paramiko")
        self._openssh_off = "sudo asks for a password"
        chan, _early = self._exec_root("true")
        try:
            self._exit_status(chan, "checking sudo")
        finally:
            close_quietly(chan)

    def _sudo_asks(self) -> bool:
        """Return True if `sudo -n true` says a password is required."""
        chan = self._exec("sudo -n true")
        try:
            chan.shutdown_write()
            rc = self._exit_status(chan, "checking sudo")
            stderr = drain_stderr(chan).lower()
        finally:
            close_quietly(chan)
        return rc != 0 and asks_password(stderr)

    # -- identity -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def address(self) -> str:
        return self.target.hostname

    @property
    def is_root(self) -> bool:
        return self.target.user == "root"

    def __enter__(self) -> SSHHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (and the jump host's). Safe to call twice."""
        if self._openssh is not None:
            self._openssh.close()
        self._conn.close()
        self._client.close()  # fabric closes only a client whose transport is still active
        if self._jump is not None:
            self._jump.close()

    # -- plumbing -------------------------------------------------------------------------------

    def open_tcp(self, address: str, port: int, *, timeout: float = 10) -> Tunnel:
        """Open a direct-tcpip channel to `address:port` from this host (sshd connects); return it.
        Raise ConnectError when sshd refuses the channel or cannot connect."""
        try:
            chan = self._transport().open_channel(
                "direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise ConnectError(
                f"{self.name} cannot open a connection to {host_port(address, port)}: "
                f"{err or type(err).__name__}",
                hint="check that the service listens there and that sshd allows TCP forwarding "
                "(AllowTcpForwarding)",
            ) from err
        chan.settimeout(timeout)
        return chan

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectError(f"connection to {self.name} is closed", hint="run the command again")
        return transport

    def _lost(self, doing: str, err: BaseException | None = None) -> ConnectError:
        return ConnectError(
            f"connection to {self.name} lost while {doing}{lost_detail(err, self._client.get_transport())}",
            hint="check the network and run the command again",
        )

    def _exec(self, command: str) -> paramiko.Channel:
        """Open a session channel running `command`; return it. An exec request sshd refuses on a
        live connection is sent once more (channel.start_command). Raise ConnectError if the
        connection is gone or sshd refuses twice."""
        doing = f"starting `{command.split()[0]}`"
        for attempt in range(EXEC_TRIES):
            try:
                return start_command(self._transport(), command, self.target.connect_timeout)
            except ExecRefused as err:
                if attempt == EXEC_TRIES - 1:
                    raise ConnectError(
                        f"sshd on {self.name} refused {doing[9:]} {EXEC_TRIES} times on a live "
                        f"connection: {err}",
                        hint="sshd's fork may fail there (out of processes or memory: see its "
                        "journal); run the command again",
                    ) from err
            except (paramiko.SSHException, OSError, EOFError) as err:
                raise self._lost(doing, err) from err
            time.sleep(EXEC_RETRY_PAUSE)
        raise AssertionError("unreachable: the last try returns or raises")

    def _as_root(self, command: str, sudo: bool = True) -> str:
        """Return `command` run as root with `sudo -n` (for the OpenSSH streams, which are off when
        sudo needs a password; channels use _exec_root)."""
        return f"sudo -n -- {command}" if sudo and not self.is_root else command

    def _exec_root(self, command: str, sudo: bool = True) -> tuple[paramiko.Channel, bytes]:
        """Open a channel running `command` (as root when `sudo` and not root), with sudo's password
        answered first when it needs one; return it (stdin now the command's) and the command's stderr
        read while waiting for sudo. Raise ConnectError, SudoPasswordError (the channel closed)."""
        if self._sudo is None or not sudo or self.is_root:
            return self._exec(self._as_root(command, sudo)), b""
        chan = self._exec(self._sudo.command(command))
        try:
            early = answer(chan, self._sudo, f"{self.target.user}@{self.name}", self.io_timeout)
        except BaseException:
            close_quietly(chan)
            raise
        return chan, early

    def _check_sudo(self, rc: int, stderr: str, sudo: bool) -> None:
        """Raise ConnectError (exit 3) if sudo refused to run without a password or is missing."""
        if sudo and not self.is_root and rc != 0:
            check_sudo(rc, stderr, self.name, self.target.user)

    def _communicate(
        self, chan: paramiko.Channel, payload: bytes, timeout: float | None, doing: str
    ) -> tuple[bytes, bytes, int]:
        """Feed `payload` to the channel's stdin while draining stdout and stderr; return both + rc.

        Raise ConnectError if the connection drops, TimeoutError past `timeout` seconds.
        """
        feed_in_background(chan, payload)
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if chan.recv_ready():
                    out.append(chan.recv(CHUNK))
                    continue
                if chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(CHUNK))
                    continue
                if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                    break
                if chan.closed or not self._client.get_transport() or not self._transport_alive():
                    raise self._lost(doing)
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{doing} did not finish within {timeout:g}s")
                select.select([chan], [], [], 0.2)
            while chan.recv_ready():
                out.append(chan.recv(CHUNK))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(CHUNK))
            rc = chan.recv_exit_status()
            if rc == -1 and not self._transport_alive():
                raise self._lost(doing)
        finally:
            close_quietly(chan)
        return b"".join(out), b"".join(err), rc

    def _transport_alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    # -- Host protocol --------------------------------------------------------------------------

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
        """Run bash `text` as root (sudo -n unless root), script on stdin, `stdin` bytes after it.

        Return its RemoteResult. Raise ConnectError if sudo wants a password or the connection drops,
        RemoteStepError(script, rc, stderr tail) on a non-zero exit when `check`.
        """
        wrapped = wrap_script(text)
        chan, early = self._exec_root(script_command(wrapped, script), sudo)
        try:
            out, err, rc = self._communicate(chan, wrapped + (stdin or b""), timeout, script)
            err = early + err
        except TimeoutError as exc:
            raise RemoteStepError(
                script, -1, str(exc), host=self.name, message=f"{exc} on {self.name}"
            ) from exc
        stderr = err.decode(errors="replace")
        self._check_sudo(rc, stderr, sudo)
        result = RemoteResult(script, out.decode(errors="replace"), stderr, rc)
        if check and rc != 0:
            raise RemoteStepError(script, rc, stderr[-STDERR_KEEP:], host=self.name)
        return result

    def run_stream(
        self, script: str, text: str, source: Readable, *, progress: Progress | None = None
    ) -> RemoteResult:
        """Run bash `text` as root (sudo -n unless root) with `source` streamed after it on stdin
        (through OpenSSH when it works, like put). Return its RemoteResult. Raise ConnectError if the
        connection drops or sudo wants a password, RemoteStepError(script, rc, stderr tail) on a
        non-zero exit; an exception raised by `source.read` ends the input and propagates. A
        host.base.DirectFile source is the whole stdin, the script in argv (as put's writer)."""
        direct, wrapped, name = callable(getattr(source, "direct_file", None)), wrap_script(text), script
        command = bash_c(text, "jujubackup-" + job_slug(name)) if direct else script_command(wrapped, name)
        stream: Readable = Counted(source) if direct else Prefixed(wrapped, source)
        rc, stdout, stderr = self._stream_in(command, stream, script, progress)
        self._check_sudo(rc, stderr, True)
        if rc != 0:
            raise RemoteStepError(script, rc, stderr[-STDERR_KEEP:], host=self.name)
        return RemoteResult(script, stdout, stderr, rc)

    def _stream_in(
        self, command: str, source: Readable, doing: str, progress: Progress | None,
        size: int | None = None,
    ) -> tuple[int, str, str]:
        """Run `command` as root with `source` (`size` bytes when known) streamed to its stdin until
        EOF (OpenSSH when usable and the stream is not small, reading a DirectFile source's file
        itself; else paramiko); return (exit code, stdout, stderr). Raise ConnectError if the
        connection drops."""
        streams = self._streams(size)
        if streams is not None:
            command = f"printf {READY.decode()} && exec {self._as_root(command)}"
            direct = source.direct_file() if isinstance(source, Counted) else None
            try:
                if direct is not None:
                    assert isinstance(source, Counted)
                    source.moved, done = streams.put_file(command, *direct, progress, self.io_timeout)
                else:
                    _moved, done = streams.put(command, source, progress, self.io_timeout)
            except Unusable as err:
                self._openssh_unusable(err)
            else:
                self.streams_via = "openssh"
                if done.returncode == SSH_FAILED or done.returncode < 0:
                    raise self._lost(doing, SSHFailed(done.stderr))
                return done.returncode, done.stdout.decode(errors="replace"), done.stderr
        self.streams_via = self._paramiko_note()
        chan, early = self._exec_root(command)
        chan.settimeout(self.io_timeout)
        try:
            self._send_all(chan, source, doing, progress)
            with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                chan.shutdown_write()
            rc = self._exit_status(chan, doing)
            stdout = drain_stdout(chan)
            stderr = early.decode(errors="replace") + drain_stderr(chan)
        finally:
            close_quietly(chan)
        return rc, stdout, stderr

    def run_detached(
        self,
        script: str,
        text: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_stderr: Callable[[str], None] | None = None,
        heartbeat_timeout: float = 15.0,
    ) -> RemoteResult:
        """Run `text` detached (systemd-run, else setsid) under a heartbeat watchdog; poll until it ends.

        The launch and the polls share one session. Each poll touches the job's heartbeat and waits
        on the host up to `poll` seconds for the job to end (a long poll); if polls stop for
        `heartbeat_timeout` seconds (client killed, connection cut) the wrapper sends TERM to the
        job's process group so its EXIT traps run. `timeout` or Ctrl-C ask the job to abort and wait
        for it. Return the RemoteResult; raise RemoteStepError on a non-zero exit (the launch's:
        `<script> (launch)`), ConnectError if the connection drops while polling.
        """
        job = f"{job_slug(script)}-{secrets.token_hex(4)}"
        job_dir = f"{DETACHED_BASE}/{job}"
        wrapper = scripts.render("detached_wrapper").encode()
        job_text = text.encode()
        launcher = scripts.render(
            "detached",
            base_dir=DETACHED_BASE,
            job_dir=job_dir,
            unit=f"jujubackup-{job}",
            heartbeat_timeout=max(1, int(heartbeat_timeout)),
            grace=120,
            wrapper_size=len(wrapper),
            job_size=len(job_text),
        )
        poller = JobPoller(self, script, job_dir, on_stderr)
        return poller.wait(poll, timeout, heartbeat_timeout, launcher, wrapper + job_text)

    def get(
        self, remote_path: str, sink: BinaryIO, *, offset: int = 0, progress: Progress | None = None,
        size: int | None = None,
    ) -> int:
        """Stream remote_path (read as root) from byte `offset` into `sink`; return bytes written.

        Through OpenSSH, a DirectSink's file is `ssh`'s stdout. Raise NotFoundError if the file does
        not exist, ConnectError if the connection drops (what was received is already in `sink`),
        RemoteStepError for other read errors.
        """
        path = shlex.quote(remote_path)
        reader = f"tail -c +{offset + 1} -- {path}" if offset else f"cat -- {path}"
        streams = self._streams(size)
        if streams is not None:
            try:
                moved, done = streams.get(self._as_root(reader), sink, progress, self.io_timeout)
            except Unusable as err:
                self._openssh_unusable(err)
            else:
                self.streams_via = "openssh"
                if done.returncode == SSH_FAILED or done.returncode < 0:
                    raise self._lost(f"downloading {remote_path}", SSHFailed(done.stderr))
                self._check_get(done.returncode, done.stderr, remote_path)
                return moved
        self.streams_via = self._paramiko_note()
        chan, early = self._exec_root(reader)
        chan.shutdown_write()
        chan.settimeout(self.io_timeout)
        moved = 0
        try:
            while True:
                try:
                    data = chan.recv(CHUNK)
                except (TimeoutError, OSError, paramiko.SSHException, EOFError) as err:
                    raise self._lost(f"downloading {remote_path}", err) from err
                if not data:
                    break
                sink.write(data)
                moved += len(data)
                if progress is not None:
                    progress(len(data))
            rc = self._exit_status(chan, f"downloading {remote_path}")
            stderr = early.decode(errors="replace") + drain_stderr(chan)
        finally:
            close_quietly(chan)
        self._check_get(rc, stderr, remote_path)
        return moved

    def _check_get(self, rc: int, stderr: str, remote_path: str) -> None:
        """Raise the typed error for a remote reader that exited `rc` (nothing when 0)."""
        self._check_sudo(rc, stderr, True)
        if rc != 0:
            if "No such file" in stderr:
                raise NotFoundError(f"{remote_path} does not exist on {self.name}")
            raise RemoteStepError("get", rc, stderr, host=self.name)

    def put(
        self, source: Readable, remote_path: str, *, offset: int = 0, mode: int = 0o600,
        progress: Progress | None = None, on_sha256: Callable[[str], None] | None = None,
        size: int | None = None,
    ) -> int:
        """Stream `source` into remote_path (as root, created with `mode`), appending at `offset`.

        The remote file is truncated to `offset` first; a remote file shorter than `offset` is an
        error (nothing is zero-filled). With `on_sha256`, the host hashes the whole file once it is
        written (same remote command, page-cached) and the hex digest is passed to it.
        Return bytes sent. Raise ConnectError if the connection drops, RemoteStepError if the remote
        side fails (e.g. disk full). An exception raised by `source.read` ends the remote writer
        (waited for, so the caller may then remove the file) and propagates.
        """
        command = bash_c(put_writer(), "jujubackup-put", remote_path, str(offset), f"{mode:o}",
                         "1" if on_sha256 else "0")
        counted = Counted(source)
        doing = f"uploading {remote_path}"
        rc, stdout, stderr = self._stream_in(command, counted, doing, progress, size)
        moved = counted.moved
        self._check_sudo(rc, stderr, True)
        if rc != 0:
            raise RemoteStepError("put", rc, stderr, host=self.name)
        if on_sha256 is not None:
            digest = stdout.split()[0] if stdout.split() else ""
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise RemoteStepError("put", rc, f"no SHA-256 from the writer: {stdout[:200]!r}",
                                      host=self.name)
            on_sha256(digest)
        return moved

    def _streams(self, size: int | None = None) -> OpenSSHStreams | None:
        """Return the OpenSSH streams for this host, started on first use; None when archives move
        over paramiko: --transfer paramiko, OpenSSH found unusable here before, or a stream of a
        known `size` below OPENSSH_MIN (unless --transfer openssh)."""
        if self._openssh_off is not None:
            return None
        if size is not None and size < OPENSSH_MIN and self.target.stream_via != "openssh":
            return None
        if self._openssh is None:
            key = self._transport().get_remote_server_key()
            try:
                self._openssh = OpenSSHStreams.start(self.target, key.get_name(), key.get_base64())
            except Unusable as err:
                self._openssh_unusable(err)
                return None
        return self._openssh

    def _openssh_unusable(self, err: Unusable) -> None:
        """Remember that OpenSSH cannot stream to this host; raise ConnectError if it was required."""
        if self.target.stream_via == "openssh":
            raise ConnectError(
                f"cannot stream through OpenSSH to {self.name}: {err}",
                hint="check that `ssh` accepts the same key non-interactively, or use --transfer paramiko",
            )
        self._openssh_off = str(err)

    def _paramiko_note(self) -> str:
        return f"paramiko ({self._openssh_off})" if self._openssh_off else "paramiko"

    def _send_all(
        self, chan: paramiko.Channel, source: Readable, doing: str, progress: Progress | None
    ) -> int:
        """Send `source` to the channel until EOF (or until the remote writer exits); return bytes sent.

        If reading `source` raises, close the channel's stdin, wait for the writer to exit, re-raise.
        """
        moved = 0
        while True:
            try:
                data = source.read(CHUNK)
            except Exception:
                with contextlib.suppress(OSError, paramiko.SSHException, EOFError, ConnectError):
                    chan.shutdown_write()
                    self._exit_status(chan, doing)
                raise
            if not data:
                return moved
            try:
                sendall_view(chan, data)
            except (TimeoutError, OSError, paramiko.SSHException, EOFError) as err:
                if chan.exit_status_ready():
                    return moved  # the writer died: the caller reports its stderr
                raise self._lost(doing, err) from err
            moved += len(data)
            if progress is not None:
                progress(len(data))

    def _exit_status(self, chan: paramiko.Channel, doing: str) -> int:
        """Wait for the channel's exit status; raise ConnectError if the connection dies first."""
        deadline = time.monotonic() + self.io_timeout
        while not chan.status_event.wait(0.5):
            if not self._transport_alive() or time.monotonic() > deadline:
                raise self._lost(doing)
        rc = chan.recv_exit_status()
        if rc == -1 and not self._transport_alive():
            raise self._lost(doing)
        return rc
