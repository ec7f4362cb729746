"""Booting one lab host: systemd-nspawn in its own cgroup dirs, joined to a pre-made netns.

Every nspawn is started from `<cgroup root>/jujubackup-lab/<labid>/<host>` on each hierarchy this
machine has for systemd (test-hosts §2.1: with --keep-unit nspawn nests payload/ under the caller's
cgroup, so containers started from the same cgroup would share one). Processes are identified by
pid + start time (from /proc/PID/stat), so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

CG_BASE = Path("/sys/fs/cgroup")
CG_NAME = "jujubackup-lab"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")


def cgroup_roots() -> list[Path]:
    """Return the cgroup hierarchies nspawn needs us to place the launcher in.

    Hybrid (this VM): /sys/fs/cgroup/systemd (name=systemd, v1) and /sys/fs/cgroup/unified (v2).
    Pure v2: /sys/fs/cgroup. Legacy without unified: /sys/fs/cgroup/systemd only.
    """
    if _fstype(CG_BASE) == "cgroup2fs":
        return [CG_BASE]
    roots = [CG_BASE / name for name in ("systemd", "unified") if _fstype(CG_BASE / name) in ("cgroupfs",
                                                                                              "cgroup2fs")]
    if not roots:
        raise RuntimeError("no systemd cgroup hierarchy under /sys/fs/cgroup; cannot run systemd-nspawn")
    return roots


def _fstype(path: Path) -> str:
    """Return the filesystem type name of `path` as stat -f reports it ("" if missing)."""
    res = subprocess.run(["stat", "-fc", "%T", str(path)], capture_output=True, text=True, check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def lab_cgroup_dirs(lab_id: str) -> list[Path]:
    """Return the per-lab cgroup dirs (one per hierarchy) of lab `lab_id`."""
    return [root / CG_NAME / lab_id for root in cgroup_roots()]


def host_cgroup_dirs(lab_id: str, host: str) -> list[Path]:
    """Return the per-host cgroup dirs (one per hierarchy) of `host` in lab `lab_id`."""
    return [d / host for d in lab_cgroup_dirs(lab_id)]


def cgroup_pids(cgdir: Path) -> set[int]:
    """Return every pid in cgroup dir `cgdir` and its descendants (empty if it does not exist)."""
    pids: set[int] = set()
    if not cgdir.is_dir():
        return pids
    for dirpath, _dirs, files in os.walk(cgdir):
        if "cgroup.procs" in files:
            try:
                text = Path(dirpath, "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(x) for x in text.split())
    return pids


def kill_cgroups(dirs: list[Path], timeout: float = 5.0) -> None:
    """SIGKILL every process in `dirs` (recursively) until they are empty or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        pids = set().union(*(cgroup_pids(d) for d in dirs)) if dirs else set()
        pids = {p for p in pids if is_alive(p)}
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def remove_cgroup_tree(cgdir: Path) -> None:
    """Remove cgroup dir `cgdir` and its sub-dirs depth-first (rmdir only: cgroupfs files go with the dir)."""
    if not cgdir.is_dir():
        return
    for dirpath, _dirs, _files in sorted(os.walk(cgdir), key=lambda t: -t[0].count("/")):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # a just-killed process may still be leaving the cgroup


def proc_start_time(pid: int) -> str | None:
    """Return field 22 (start time in ticks) of /proc/PID/stat, or None if pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def is_alive(pid: int, start: str | None = None) -> bool:
    """Return True if `pid` runs (not a zombie) and, when `start` is given, is the same process."""
    st = proc_start_time(pid)
    return st is not None and (start is None or st == start)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
MIN_INOTIFY_INSTANCES = 1024  # what LXD's production-setup guide sets for hosts of many containers


def ensure_inotify_instances(minimum: int = MIN_INOTIFY_INSTANCES) -> None:
    """Raise the kernel's per-user inotify instance limit to at least `minimum` (never lower it).

    Every container's systemd (PID 1, journald, logind, …) takes about 7 of root's inotify instances;
    at the default 128 the 19th concurrent lab host dies at boot with "Failed to create control group
    inotify object: Too many open files". A sysctl is not a thing a lab makes, so teardown leaves it.
    Do nothing if the file cannot be read or written (not Linux, or no root: Lab.create needs root)."""
    with contextlib.suppress(OSError, ValueError):
        if int(INOTIFY_INSTANCES.read_text()) < minimum:
            INOTIFY_INSTANCES.write_text(f"{minimum}\n")


def start(merged: Path, machine: str, hostname: str, netns: str, cgdirs: list[Path],
          log: Path) -> subprocess.Popen[bytes]:
    """Boot the container rooted at `merged`; return the nspawn Popen (detached in its own session).

    The launcher shell moves itself into `cgdirs` (created here) before exec'ing systemd-nspawn, so
    the container's payload/supervisor cgroups nest under the host's own dirs.
    """
    for d in cgdirs:
        d.mkdir(parents=True, exist_ok=True)
    procs = " ".join(str(d / "cgroup.procs") for d in cgdirs)
    argv = [
        "/bin/sh", "-c", 'for f in $JB_CGPROCS; do echo $$ > "$f" || exit 125; done; exec "$@"', "sh",
        "systemd-nspawn", "-q", "-D", str(merged), "-M", machine, f"--hostname={hostname}", "-b",
        "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{netns}",
        "--console=read-only", "--resolv-conf=off", "--timezone=off", "--link-journal=no",
        # root of a real VM may change its own firewall (the drill closes egress with nft, issue 16);
        # each host has a network namespace of its own (net.py), so this reaches no other host.
        "--capability=CAP_NET_ADMIN",
        # the juju-db snap's commands confine themselves with Landlock (standins/confinement.py: the
        # AppArmor path rules of a strict snap); nspawn's default seccomp filter refuses its syscalls
        "--system-call-filter=landlock_create_ruleset landlock_add_rule landlock_restrict_self",
    ]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "JB_CGPROCS": procs}
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True, close_fds=True)


def stop(pid: int, start_time: str | None, popen: subprocess.Popen[bytes] | None = None,
         timeout: float = 10.0) -> None:
    """Stop the nspawn `pid`: SIGTERM (clean poweroff), then SIGTERM again (immediate), then SIGKILL.

    `start_time` guards against a recycled pid; `popen` (when this process started it) is reaped.
    Return when the process is gone.
    """
    plan = [(signal.SIGTERM, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)]
    for sig, wait in plan:
        if not _alive(pid, start_time, popen):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid, start_time, popen):
                return
            time.sleep(0.02)


def _alive(pid: int, start_time: str | None, popen: subprocess.Popen[bytes] | None) -> bool:
    if popen is not None:
        return popen.poll() is None
    return is_alive(pid, start_time)


def remove_propagate_dir(machine: str) -> None:
    """Remove /run/systemd/nspawn/propagate/<machine>, which nspawn leaves behind here (/run is no tmpfs)."""
    path = PROPAGATE_DIR / machine
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
