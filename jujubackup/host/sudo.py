"""sudo with a password on an SSH exec channel, answered by invoke's FailingResponder.

The command runs as `sudo -S -p <prompt nonce> -- sh -c 'printf <ready nonce> >&2; exec CMD'`:
sudo -S writes the prompt on stderr and reads one line of stdin (byte by byte: sudo's tgetpass, so
nothing after the line is consumed). The client watches stderr: the prompt is answered once with the
password; the ready marker says sudo accepted it and CMD now owns stdin, and only then does the
caller send the script or the stream. So the password and the script never mix, whether sudo asks
(the first command of a session), does not (NOPASSWD, a cached timestamp) or refuses (the prompt
comes again: the channel is closed at once, before CMD ever ran; nothing changed on the host).

The password is written only to the channel; it is in no argv (the nonces are), no log, no message.
"""

from __future__ import annotations

import re
import secrets
import shlex
import time
from dataclasses import dataclass, field
from typing import Protocol

from invoke.exceptions import ResponseNotAccepted
from invoke.watchers import FailingResponder

from jujubackup.errors import ConnectError
from jujubackup.sudopassword import HINT, SudoPassword

__all__ = ["SudoAuth", "SudoPassword", "SudoPasswordError", "answer", "asks_password", "check_sudo"]

PASSWORD_MARKERS = ("a password is required", "a terminal is required")
"""What `sudo -n` says when the user's sudo needs a password."""


def asks_password(stderr: str) -> bool:
    """Return True if `sudo -n`'s stderr says a password is required."""
    low = stderr.lower()
    return any(marker in low for marker in PASSWORD_MARKERS)


def check_sudo(rc: int, stderr: str, host: str, user: str) -> None:
    """Given the non-zero exit and stderr of a command run with `sudo -n` as `user` on `host`, raise
    ConnectError (exit 3) when sudo wanted a password or is not installed; return otherwise."""
    if asks_password(stderr):
        raise ConnectError(f"sudo requires a password on {host} (user {user})", hint=HINT)
    low = stderr.lower()
    if rc == 127 and "sudo" in low and "not found" in low:
        raise ConnectError(f"sudo is not installed on {host}",
                           hint="install sudo on the host or connect as root")


class SudoPasswordError(ConnectError):
    """sudo refused the password given (exit 3, nothing ran); never a reason to try another host:
    the same password would be tried there too."""


class Channel(Protocol):
    """What `answer` needs of a paramiko Channel."""

    def recv_stderr(self, nbytes: int) -> bytes: ...
    def recv_stderr_ready(self) -> bool: ...
    def exit_status_ready(self) -> bool: ...
    def sendall(self, data: bytes) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...


@dataclass(frozen=True)
class SudoAuth:
    """One host's sudo password and the nonces of its prompt and ready marker."""

    password: str = field(repr=False)
    prompt: str = field(default_factory=lambda: f"jujubackup-sudo-{secrets.token_hex(8)}:")
    ready: str = field(default_factory=lambda: f"jujubackup-ready-{secrets.token_hex(8)}")

    def command(self, command: str) -> str:
        """Given a shell command line, return the one that runs it as root once sudo accepted the
        password (the ready marker on stderr first)."""
        inner = f"printf '%s\\n' {self.ready} >&2; exec {command}"
        return f"sudo -S -p {shlex.quote(self.prompt)} -- sh -c {shlex.quote(inner)}"


def answer(chan: Channel, auth: SudoAuth, who: str, timeout: float) -> bytes:
    """Given a channel running `auth.command(...)`, answer sudo's prompt (once) until the ready
    marker; return the stderr bytes that followed the marker (the command's own). The channel is
    left blocking (timeout None).

    Raise SudoPasswordError when the prompt comes back or sudo exits after it was answered,
    ConnectError when sudo exits before the marker otherwise (its last line, e.g. not in sudoers) or
    nothing happens within `timeout` seconds (a prompt we cannot recognise: sudoers
    passprompt_override). The caller closes the channel on an error.
    """
    prompt = re.escape(auth.prompt)
    # The sentinel is the prompt a second time: sudo asks again only after a wrong answer (its
    # "Sorry, try again." is localised and replaceable: badpass_message, insults).
    responder = FailingResponder(prompt, auth.password + "\n", f"{prompt}.*{prompt}")
    marker = (auth.ready + "\n").encode()
    seen = b""
    answered = False
    deadline = time.monotonic() + timeout
    chan.settimeout(WAIT)
    try:
        while True:
            data = _recv_stderr(chan)
            if data:
                seen += data
                at = seen.find(marker)
                if at >= 0:
                    return seen[at + len(marker):]
                try:
                    for response in responder.submit(seen.decode(errors="replace")):
                        chan.sendall(response.encode())
                        answered = True
                except ResponseNotAccepted as err:
                    raise _refused(who) from err
                continue
            if data == b"" or chan.exit_status_ready():
                if chan.recv_stderr_ready():
                    continue
                raise _refused(who) if answered else _failed(who, seen, auth)
            if time.monotonic() > deadline:
                raise ConnectError(f"sudo did not start the command for {who} within {timeout:g}s",
                                   hint="sudo may ask with a prompt jujubackup cannot answer "
                                   "(passprompt_override in sudoers); " + HINT)
    finally:
        chan.settimeout(None)


WAIT = 0.2
"""Seconds one read of sudo's stderr waits before the deadline and the exit status are checked."""


def _recv_stderr(chan: Channel) -> bytes | None:
    """Return what stderr has (b"" once it is closed), None when nothing came within WAIT."""
    try:
        return chan.recv_stderr(65536)
    except TimeoutError:
        return None


def _failed(who: str, seen: bytes, auth: SudoAuth) -> ConnectError:
    lines = [ln for ln in seen.decode(errors="replace").splitlines() if ln.strip() and auth.prompt not in ln]
    return ConnectError(f"sudo failed for {who}: {lines[-1] if lines else 'no reason given'}",
                        hint="check the user's sudo rights on the host (`sudo -l` as that user)")


def _refused(who: str) -> SudoPasswordError:
    return SudoPasswordError(f"sudo refused the password for {who} (nothing was run)",
                             hint="check the password given (--sudo-password-file, "
                             "$JUJUBACKUP_SUDO_PASSWORD or the one typed)")
