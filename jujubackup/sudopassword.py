"""The login user's sudo password, given once per run (issue 15): `--sudo-password-file FILE`, the
environment variable JUJUBACKUP_SUDO_PASSWORD, or asked with no echo on the terminal the first time a
host's sudo wants one. It only ever travels on an SSH channel's stdin to `sudo -S` (host/sudo.py):
never in argv, a log, an error message or output.

The variable is removed from this process's environment as soon as it is read, so no child (the
`ssh` client, `ssh -G`'s `Match exec` commands, the verifying process) inherits it.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

from jujubackup.errors import ConnectError, UsageError
from jujubackup.localfiles import read_private_file

ENV = "JUJUBACKUP_SUDO_PASSWORD"
MAX_LENGTH = 1024


class SudoPassword:
    """Where the sudo password comes from: a value given up front, or `ask(who)` called at most once
    (the answer is kept for every host of the run). Its repr never shows the value."""

    def __init__(self, value: str | None = None, ask: Callable[[str], str] | None = None) -> None:
        self._value = value
        self._ask = ask

    def __repr__(self) -> str:
        return "SudoPassword(<hidden>)"

    @property
    def given(self) -> bool:
        """True when the password was given up front (file or environment), so every sudo is answered
        with it; False when it is only asked for once a host's sudo says it needs one."""
        return self._value is not None

    @property
    def can_ask(self) -> bool:
        return self._value is not None or self._ask is not None

    def get(self, who: str) -> str:
        """Return the password (asking once, naming `who`, when it was not given). Raise ConnectError
        (exit 3) when there is no way to get one, UsageError for an unusable answer."""
        if self._value is None:
            if self._ask is None:
                raise ConnectError(f"sudo requires a password for {who}", hint=HINT)
            self._value = checked(self._ask(who), "the password typed")
        return self._value


HINT = (f"give it with --sudo-password-file FILE (mode 0600) or ${ENV}, run on a terminal to be asked, "
        "or give the user NOPASSWD sudo on the host (a file in /etc/sudoers.d)")


def checked(value: str, where: str) -> str:
    """Given a password (a trailing newline removed), return it. Raise UsageError if it is empty,
    has a newline or NUL inside (sudo reads one line) or is absurdly long."""
    value = value.removesuffix("\n").removesuffix("\r")
    if not value or "\n" in value or "\0" in value or "\r" in value or len(value) > MAX_LENGTH:
        raise UsageError(f"{where} is not a usable sudo password (empty, several lines, or too long)")
    return value


def read_file(path: Path) -> str:
    """Given --sudo-password-file, return its first line. Raise as localfiles.read_private_file does
    (5 missing; 6 a link, not a regular file of this user, group or others can read or write it, as
    ssh(1) refuses such a private key), UsageError for an unusable content."""
    what = "sudo password file"
    try:
        text = read_private_file(path, what).decode("utf-8")
    except UnicodeError as err:
        raise UsageError(f"cannot read {what} {path}: not UTF-8") from err
    first = text.splitlines()[0] if text.splitlines() else ""
    return checked(first, f"{what} {path}")


def ask_on_terminal(who: str) -> str:
    """Ask for the sudo password of `who` on the terminal, with no echo."""
    return getpass.getpass(f"[jujubackup] sudo password for {who}: ")


def from_options(path: Path | None, env: MutableMapping[str, str] | None = None,
                 interactive: bool | None = None) -> SudoPassword:
    """Given --sudo-password-file (or None), the environment (default os.environ: the variable is
    removed from it) and whether a terminal may be asked (default: stdin is a TTY), return the
    SudoPassword of this run. The file wins over the variable. Raise as read_file does, UsageError
    for an unusable variable."""
    env = os.environ if env is None else env
    from_env = env.pop(ENV, None)
    if path is not None:
        return SudoPassword(read_file(path))
    if from_env is not None:
        return SudoPassword(checked(from_env, f"${ENV}"))
    interactive = sys.stdin.isatty() if interactive is None else interactive
    return SudoPassword(ask=ask_on_terminal if interactive else None)
