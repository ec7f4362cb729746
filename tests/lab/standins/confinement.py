"""Strict snap confinement of the juju-db snap's commands and daemon, as snapd and AppArmor apply it
(test code, never shipped). The snap's executables (/snap/bin/juju-db.*, /snap/juju-db/<rev>/bin/*)
call enter() before anything else; every rule is kernel-enforced, so a stand-in fails on a denied path
the way any program does (EACCES, ENOENT), and the tools map that to the real tools' messages.

1. Private /tmp. snap-confine gives a strictly confined snap its own /tmp: a new mount namespace with
   /tmp/snap-private-tmp/snap.<snap>/tmp bind-mounted over /tmp (snapd cmd/snap-confine/mount-support.c,
   setup_private_tmp; spread test tests/main/security-private-tmp). A file the host wrote to /tmp is not
   there for the snap, and what the snap writes to /tmp is not in the host's /tmp (Juju works around
   it: state/backups/db.go `snapTmpDir = "/tmp/snap-private-tmp/snap.juju-db"`, snapd LP#1999109).
2. Path rules. The default AppArmor template of a strict snap (snapd interfaces/apparmor/template.go)
   lets it read and write only its own dirs: /var/snap/<snap>/ (SNAP_DATA, SNAP_COMMON), @{HOME}/snap/
   <snap>/ (SNAP_USER_DATA; root's is /root/snap/<snap>) and /tmp (the private one), read /snap/<snap>/
   and the usual system dirs (/etc, /usr, /lib, /proc, /sys, /dev). Here: a Landlock ruleset with the
   same allow-list (Linux Documentation/userspace-api/landlock.rst); anything else is EACCES.
3. Inherited descriptors. At exec AppArmor revalidates the descriptors a confined program inherits
   and replaces each one its profile may not use by a null file (Linux security/apparmor/file.c
   aa_inherit_files / revalidate_tty; juju-restore db/mongo.go: "Use CombinedOutput ... this avoids a
   permissions issue with the Snap mongorestore writing to the file"): stdout/stderr redirected to a
   file outside the snap's dirs come out empty. Pipes, sockets and terminals are kept.
"""

from __future__ import annotations

import ctypes
import os
import stat
import sys

SNAP = "juju-db"
PRIVATE_TMP_ROOT = "/tmp/snap-private-tmp"
READ_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys")
DEV_DIRS = ("/dev",)

# <linux/landlock.h>
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_RULE_PATH_BENEATH = 1
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1, 2, 4, 8
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 16, 32, 64, 128, 256
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM, _REFER, _TRUNCATE = 512, 1024, 2048, 4096, 8192, 16384
_READ = _EXECUTE | _READ_FILE | _READ_DIR
_ALL_V1 = 8191  # every right of Landlock ABI 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18


class ConfinementError(RuntimeError):
    """The confinement could not be set up (the stand-in refuses to run unconfined)."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise ConfinementError(f"snap confinement: {what}: {os.strerror(err)}")
    return rc


def write_dirs(snap: str = SNAP) -> tuple[str, ...]:
    """Return the dirs a confined command of `snap` may write (after its private /tmp is mounted)."""
    return (f"/var/snap/{snap}", f"/root/snap/{snap}", "/tmp")


def may_write(path: str, snap: str = SNAP) -> bool:
    """Given an absolute path, return True when the snap's profile lets it write there."""
    if path in ("/dev/null", "/dev/zero", "/dev/full") or path.startswith(("/dev/pts/", "/dev/tty")):
        return True
    return any(path == d or path.startswith(d + "/") for d in write_dirs(snap))


def revalidate_inherited(snap: str = SNAP) -> list[int]:
    """Replace stdin/stdout/stderr when they are files outside what the snap may use (rule 3) with
    /dev/null; return the replaced descriptors."""
    replaced = []
    for fd in (0, 1, 2):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if not target.startswith("/") or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            continue  # pipes, sockets (journald), anonymous files: kept
        readable = any(target.startswith(d + "/") for d in READ_DIRS) or may_write(target, snap)
        if may_write(target, snap) or (fd == 0 and readable):
            continue
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, fd)
        os.close(null)
        replaced.append(fd)
    return replaced


def private_tmp(snap: str = SNAP) -> str:
    """Give this process snapd's private /tmp for `snap` (rule 1); return the host path of it."""
    base = f"{PRIVATE_TMP_ROOT}/snap.{snap}"
    os.makedirs(PRIVATE_TMP_ROOT, mode=0o700, exist_ok=True)
    os.makedirs(base, mode=0o700, exist_ok=True)
    tmp = f"{base}/tmp"
    if not os.path.isdir(tmp):
        os.mkdir(tmp)
        os.chmod(tmp, 0o1777)
    _check(_libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "making / private")
    _check(_libc.mount(tmp.encode(), b"/tmp", None, _MS_BIND, None), f"bind-mounting {tmp} on /tmp")
    return tmp


def restrict_paths(snap: str = SNAP) -> None:
    """Allow this process only the snap's dirs and reads of the system dirs (rule 2)."""
    abi = _libc.syscall(_CREATE_RULESET, None, 0, 1)
    if abi < 1:
        raise ConfinementError("snap confinement: the kernel has no Landlock (needed for the path rules)")
    handled = _ALL_V1 | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = _check(_libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0), "ruleset")
    os.makedirs(f"/root/snap/{snap}", mode=0o755, exist_ok=True)
    rules = [(d, _READ) for d in (*READ_DIRS, f"/snap/{snap}")]
    rules += [(d, _READ | _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0)) for d in DEV_DIRS]
    rules += [(d, handled) for d in write_dirs(snap)]
    try:
        for path, access in rules:
            if not os.path.exists(path):
                continue
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access & handled, fd)
                _check(_libc.syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0), path)
            finally:
                os.close(fd)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(_libc.syscall(_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


def enter(snap: str = SNAP) -> None:
    """Confine this process as a strict snap's command: descriptors revalidated, private /tmp, path
    rules. Exit 1 with the reason when that cannot be done (never run unconfined)."""
    try:
        revalidate_inherited(snap)
        private_tmp(snap)
        restrict_paths(snap)
    except (ConfinementError, OSError) as exc:
        print(f"snap-confine: {exc}", file=sys.stderr)
        sys.exit(1)
