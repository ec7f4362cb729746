"""Reading a secret the operator keeps on the workstation: the sudo password file, a store's S3
credentials file, an age or SSH identity, the stamp key, an S3 put's state. One reader, one rule, the
rule ssh(1) applies to a private key: a regular file of this user that group and others can neither
read nor write, read through no link, and of a bounded size (a FIFO or /dev/zero named by mistake
must not hang or fill memory).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from jujubackup.errors import NotFoundError, RefusedError, UsageError

MAX_PRIVATE_FILE = 1 << 20
"""A private file larger than this is not the file meant (an identity file of many keys is < 64 KiB)."""


def read_private_file(path: Path, what: str, *, limit: int = MAX_PRIVATE_FILE) -> bytes:
    """Given the path of a file holding a secret and what it is ("sudo password file"), return its
    bytes. Raise NotFoundError (5) if it is missing; RefusedError (6) if it is a symbolic link, not a
    regular file (a FIFO, a device, a directory), not owned by this user, readable or writable by
    group or others, or larger than `limit` bytes; UsageError (2) if it cannot be read. Each message
    is one line naming `what` and the path, never the content; each hint says what to do."""
    try:
        # O_NOFOLLOW: a link is refused, not followed; O_NONBLOCK: opening a FIFO does not wait
        # for a writer (it is then refused as not a regular file).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as err:
        raise NotFoundError(f"{what} {path} not found") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RefusedError(f"{what} {path} is a symbolic link",
                               hint="name the file itself, not a link to it") from err
        raise UsageError(f"cannot read {what} {path}: {err.strerror}") from err
    try:
        _check_private(os.fstat(fd), path, what, limit)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as err:
            raise UsageError(f"cannot read {what} {path}: {err.strerror}") from err
    if len(data) > limit:  # it grew after fstat
        raise RefusedError(f"{what} {path} is larger than {limit} bytes", hint="is it the right file?")
    return data


def _check_private(info: os.stat_result, path: Path, what: str, limit: int) -> None:
    """Raise RefusedError unless `info` is a regular file of this user, mode 0600 or tighter, of
    at most `limit` bytes."""
    if not stat.S_ISREG(info.st_mode):
        raise RefusedError(f"{what} {path} is not a regular file", hint="name a regular file (mode 0600)")
    if info.st_uid != os.geteuid():
        raise RefusedError(f"{what} {path} is not owned by you (uid {info.st_uid})",
                           hint=f"keep it as your own file: chown {os.geteuid()} {path}; chmod 600 {path}")
    if info.st_mode & 0o077:
        raise RefusedError(f"{what} {path} must be mode 0600 (it is {stat.S_IMODE(info.st_mode):04o}: "
                           "group or others can read or write it, as ssh refuses for a key)",
                           hint=f"chmod 600 {path}")
    if info.st_size > limit:
        raise RefusedError(f"{what} {path} is larger than {limit} bytes", hint="is it the right file?")
