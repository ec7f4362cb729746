"""One exception root for jujubackup; every error carries its exit code and a hint.

The exit-code table (DESIGN.md §6) is defined here once and printed in `--help` and the README.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_REMOTE = 4
EXIT_NOT_FOUND = 5
EXIT_REFUSED = 6
EXIT_LOCKED = 7
EXIT_VERIFY = 8
EXIT_PARTIAL = 9
EXIT_INTERRUPTED = 130

EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "ok"),
    (EXIT_INTERNAL, "internal error (a bug: please report it)"),
    (EXIT_USAGE, "usage error (bad flags or arguments)"),
    (EXIT_CONNECT, "connect, authentication, sudo or host-key failure (also: S3 credentials refused, S3 "
                   "endpoint not answering)"),
    (EXIT_REMOTE, "a remote step failed (script name, exit code and stderr tail shown)"),
    (EXIT_NOT_FOUND, "backup, file or host not found, or an ambiguous ID prefix"),
    (EXIT_REFUSED, "refused by a precondition (disk space, versions, live controllers, …), or a "
                   "confirmation question answered no (nothing changed)"),
    (EXIT_LOCKED, "another jujubackup operation holds the controller's lock"),
    (EXIT_VERIFY, "verification failed (checksum, manifest, unsafe or missing archive members; an encrypted "
                  "copy that the identity does not open, or truncated or tampered)"),
    (EXIT_PARTIAL, "partly done: what is left is listed (repoint: machines, `repoint --resume` finishes "
                   "them; run: the controllers that failed, while others succeeded)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
)


def exit_code_table() -> str:
    """Return the exit-code table as aligned plain-text lines."""
    return "\n".join(f"{code:>3}  {text}" for code, text in EXIT_CODES)


class JujuBackupError(Exception):
    """Root of every error jujubackup reports; carries an exit code and a hint."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str, hint: str | None = None, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(JujuBackupError):
    exit_code = EXIT_USAGE


class ConnectError(JujuBackupError):
    """Could not connect, authenticate, verify the host key, or use sudo."""

    exit_code = EXIT_CONNECT


class RemoteStepError(JujuBackupError):
    """A remote script failed: carries the script name, its exit code and the tail of its stderr."""

    exit_code = EXIT_REMOTE

    def __init__(
        self,
        script: str,
        returncode: int,
        stderr_tail: str,
        *,
        host: str = "",
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.script = script
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.host = host
        where = f" on {host}" if host else ""
        last = stderr_tail.strip().splitlines()[-1] if stderr_tail.strip() else "no stderr"
        super().__init__(message or f"remote step {script}{where} failed (exit {returncode}): {last}", hint)


class NotFoundError(JujuBackupError):
    exit_code = EXIT_NOT_FOUND


class RefusedError(JujuBackupError):
    """A precondition refused the operation; `--force` may override where it makes sense."""

    exit_code = EXIT_REFUSED


class DeclinedError(RefusedError):
    """The operator answered no to a confirmation question: nothing was changed. Exit 6 in every verb
    that asks (remove, prune, restore); --yes does not ask."""


class LockedError(JujuBackupError):
    exit_code = EXIT_LOCKED


class VerifyError(JujuBackupError):
    """An archive or transfer did not verify."""

    exit_code = EXIT_VERIFY


class PartialError(JujuBackupError):
    """Part of the work was done and the rest is listed (repoint: machines not re-pointed; run:
    controllers that failed)."""

    exit_code = EXIT_PARTIAL


class InterruptedError_(JujuBackupError):
    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class ErrorReport:
    """What the CLI prints for an error: one line, a hint, the exit code."""

    message: str
    hint: str | None
    exit_code: int

    @classmethod
    def of(cls, err: JujuBackupError) -> ErrorReport:
        return cls(err.message, err.hint, err.exit_code)


def local_os_error(err: OSError, doing: str = "") -> JujuBackupError:
    """Given an OSError of a local file operation, return the typed error it stands for: no space
    or quota, a read-only or unwritable place -> RefusedError (exit 6); a missing file or directory
    -> NotFoundError (exit 5); anything else -> RefusedError (exit 6). Such failures are the
    workstation's state, not bugs, so they never show as "internal error (exit 1)"."""
    where = f" ({err.filename})" if err.filename else ""
    what = f"{doing}: " if doing else ""
    message = f"{what}{err.strerror or err}{where}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return RefusedError(message, hint="free space on that filesystem, or choose another place")
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFoundError(message, hint="check the path: its directory must exist")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return RefusedError(message, hint="check the permissions of that path (or choose another)")
    return RefusedError(message, hint="check that path on this workstation")
