"""The lab: throwaway Debian hosts (real systemd + OpenSSH) in systemd-nspawn containers.

    lab = Lab.create(controllers=1, spares=1, profile="juju-2.9")   # root only
    lab.host("ctl0").ssh("systemctl is-active ssh")                  # OpenSSH client, lab config
    (lab.host("ctl0").root / "var/lib/juju").exists()                # host files from the test process
    lab.teardown()

One lab = one id (6 hex chars) and one state dir /run/jujubackup-lab/<id>/ holding state.json (every
name, pid, mount and IP it made), the client key, known_hosts and ssh_config. Several labs run at
once: IPs come from a pool guarded by the global flock /run/jujubackup-lab/lock, and every resource
name carries the lab id. A lab whose owner process died (or the previous CLI lab of the same name) is
torn down by the names it recorded; names with our prefixes and no state dir are removed too.
Nothing without our prefix is ever touched.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.lab import net, nspawn, provision, rootfs

STATE_ROOT = Path("/run/jujubackup-lab")
DATA_ROOT = Path("/var/lib/jujubackup-lab")
LOCK_PATH = STATE_ROOT / "lock"
PROFILES = tuple(provision.PROFILES)  # juju-2.8, juju-2.9, juju-2.8-bionic, juju-2.8-focal, juju-3.6
BOOT_TIMEOUT = 90.0
LAB_ID_RE = re.compile(r"^[0-9a-f]{6}$")
Role = Literal["controller", "spare", "workload", "bootstrapped"]


class LabError(RuntimeError):
    """The lab could not be built, booted or torn down; the message says which host and step."""


def require_root() -> None:
    """Raise LabError unless running as root (namespaces, mounts and nspawn need it)."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, overlay mounts, systemd-nspawn); "
                       "run it with sudo")


# --------------------------------------------------------------------------- global lock

_lock_guard = threading.RLock()
_lock_depth = 0
_lock_fd: int | None = None


@contextlib.contextmanager
def global_lock() -> Iterator[None]:
    """Hold the machine-wide lab lock (flock on /run/jujubackup-lab/lock); re-entrant in this process."""
    global _lock_depth, _lock_fd
    with _lock_guard:
        if _lock_depth == 0:
            STATE_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
            fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            _lock_fd = fd
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
            if _lock_depth == 0 and _lock_fd is not None:
                os.close(_lock_fd)
                _lock_fd = None


# --------------------------------------------------------------------------- state

@dataclass
class HostState:
    """Everything recorded about one lab host (names are derived from lab id + host name/IP)."""

    name: str
    ip: str
    role: Role
    machine_id: str | None
    profile: str
    netns: str
    veth: str
    machine: str
    base: str
    cgroups: list[str]
    nspawn_pid: int | None = None
    nspawn_start: str | None = None

    @property
    def merged(self) -> Path:
        return Path(self.base) / "merged"


@dataclass
class LabState:
    """state.json of one lab."""

    lab_id: str
    profile: str
    db_size: int
    rootfs: str
    hosts: list[HostState]
    owner_pid: int | None
    owner_start: str | None
    cli_name: str | None = None
    created: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LabState:
        """Given a parsed state.json, return the LabState. Raise KeyError/TypeError if malformed."""
        hosts = [HostState(**_known_fields(HostState, h)) for h in doc["hosts"]]
        return cls(**{**_known_fields(cls, doc), "hosts": hosts})

    def owner_alive(self) -> bool:
        """Return True if the owner process still runs (a detached CLI lab has no owner: False)."""
        return self.owner_pid is not None and nspawn.is_alive(self.owner_pid, self.owner_start)


def _known_fields(kind: type, doc: dict[str, Any]) -> dict[str, Any]:
    """Return the entries of `doc` that are fields of dataclass `kind` (state written by other versions)."""
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in doc.items() if k in names}


def _state_dir(lab_id: str) -> Path:
    return STATE_ROOT / lab_id


def _read_state(lab_id: str) -> LabState | None:
    """Return the recorded state of lab `lab_id`, or None if missing or unreadable."""
    try:
        return LabState.from_json(json.loads((_state_dir(lab_id) / "state.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(state: LabState) -> None:
    """Write state.json of `state` atomically."""
    path = _state_dir(state.lab_id) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=1))
    tmp.replace(path)


def _lab_ids() -> list[str]:
    """Return the ids of all labs with a state dir on this machine."""
    if not STATE_ROOT.is_dir():
        return []
    return sorted(p.name for p in STATE_ROOT.iterdir() if p.is_dir() and LAB_ID_RE.match(p.name))


# --------------------------------------------------------------------------- keys and files

def _ed25519() -> tuple[str, str]:
    """Return a fresh ed25519 key pair as (OpenSSH private key PEM, 'ssh-ed25519 AAAA…' public)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def _write(path: Path, text: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    """Write `text` to `path` (parents created) with `mode` and owner uid:gid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, uid, gid)
    path.chmod(mode)


def _passwd_ids(root: Path, user: str) -> tuple[int, int]:
    """Given a host root, return (uid, gid) of `user` from its /etc/passwd. Raise LabError if absent."""
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            return int(parts[2]), int(parts[3])
    raise LabError(f"user {user} missing in {root}/etc/passwd")


def _authorize(root: Path, home: str, user: str, pubkey: str) -> None:
    """Ensure `pubkey` is a line of ~user/.ssh/authorized_keys under `root` (0700 dir, 0600 file)."""
    uid, gid = _passwd_ids(root, user)
    sshdir = root / home.lstrip("/") / ".ssh"
    sshdir.mkdir(parents=True, exist_ok=True)
    os.chown(sshdir, uid, gid)
    sshdir.chmod(0o700)
    keys = sshdir / "authorized_keys"
    lines = keys.read_text().splitlines() if keys.exists() else []
    if pubkey not in lines:
        lines.append(pubkey)
    _write(keys, "\n".join(lines) + "\n", 0o600, uid, gid)


def _mounts_under(prefix: Path) -> list[Path]:
    """Return mount points at or below `prefix` (deepest first), from /proc/self/mountinfo."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if mnt == str(prefix) or mnt.startswith(f"{prefix}/"):
            found.append(Path(mnt))
    return sorted(found, key=lambda p: -len(p.parts))


def _umount(path: Path) -> None:
    """Unmount `path` (every stacked mount), retrying while busy, finally lazily."""
    for _ in range(20):
        if path not in _mounts_under(path):
            return
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            time.sleep(0.05)
    if path in _mounts_under(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _rm_tree(path: Path) -> None:
    """Remove `path` recursively, never crossing into a mount (refuses if one is still below it)."""
    if not path.exists():
        return
    if _mounts_under(path):
        raise LabError(f"refusing to delete {path}: still has mounts {_mounts_under(path)}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def parse_size(text: str | int) -> int:
    """Given '1GiB', '512M', '100MB', '4096' or an int, return the number of bytes. Raise ValueError."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*", text, re.I)
    if not m:
        raise ValueError(f"bad size {text!r} (examples: 0, 512MiB, 1GiB)")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * (1024 ** power))


# --------------------------------------------------------------------------- hosts

class LabHost:
    """One booted lab host. `root` is its overlay merged dir (read/write from the test process)."""

    def __init__(self, lab: Lab, state: HostState) -> None:
        self._lab = lab
        self._st = state
        self._popen: subprocess.Popen[bytes] | None = None
        self._boot_log_offset = 0  # size of the agent log before this boot: older lines say nothing

    @property
    def name(self) -> str:
        """Host name: ctl0, ctl1, … (controllers), spare0, … (spares)."""
        return self._st.name

    @property
    def ip(self) -> str:
        """The host's address on the lab bridge (10.201.0.x)."""
        return self._st.ip

    @property
    def role(self) -> Role:
        """"controller", "spare", "workload" or "bootstrapped" (an empty controller of its own)."""
        return self._st.role

    @property
    def machine_id(self) -> str | None:
        """Juju machine id ("0", "1", …) for controllers, None for spares."""
        return self._st.machine_id

    @property
    def profile(self) -> str:
        """The lab profile (juju-2.9 or juju-2.8)."""
        return self._st.profile

    @property
    def root(self) -> Path:
        """The host's filesystem as seen from the test process (overlay merged dir)."""
        return self._st.merged

    def __repr__(self) -> str:
        return f"LabHost({self.name} {self.ip} {self.role} lab={self._lab.id})"

    def ssh(self, cmd: str, user: str = "root", timeout: float = 300, check: bool = False,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `cmd` on this host with the OpenSSH client and the lab's config; return the result.

        Raise subprocess.CalledProcessError if `check` and the exit status is non-zero.
        """
        argv = ["ssh", "-F", str(self._lab.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                f"{user}@{self.name}", cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)

    def add_password_sudo_user(self, user: str = "jbops") -> str:
        """Add `user` to this host (the lab's client key in its authorized_keys, a random password)
        with sudo rights that need the password (`USER ALL=(ALL) ALL`, no NOPASSWD: unlike ubuntu's
        rule in the rootfs); return the password. It reaches chpasswd on stdin, never in argv."""
        password = secrets.token_urlsafe(18)
        rule = f"/etc/sudoers.d/80-{user}"
        script = (
            f"set -e; id {user} >/dev/null 2>&1 || "
            f"useradd --create-home --shell /bin/bash --user-group {user}; chpasswd; "
            f"printf '%s ALL=(ALL) ALL\\n' {user} > {rule}; chmod 0440 {rule}; visudo -cq; "
            f"install -d -m 0700 -o {user} -g {user} /home/{user}/.ssh; "
            f"install -m 0600 -o {user} -g {user} /root/.ssh/authorized_keys "
            f"/home/{user}/.ssh/authorized_keys"
        )
        self.ssh(script, input=f"{user}:{password}\n", check=True, timeout=60)
        return password

    @property
    def nspawn_pid(self) -> int | None:
        """Pid of this host's systemd-nspawn while it runs (None when powered off)."""
        return self._st.nspawn_pid

    def is_running(self) -> bool:
        """Return True if this host's container (nspawn) is running."""
        if self._popen is not None:
            return self._popen.poll() is None
        return self._st.nspawn_pid is not None and nspawn.is_alive(self._st.nspawn_pid, self._st.nspawn_start)

    def power_off(self) -> None:
        """Stop the container (clean poweroff, then force) and keep its disk, network and identity."""
        self._stop()
        self._lab._save()

    def power_on(self) -> None:
        """Boot the container again from the same disk (same IP and keys); return when it is ready."""
        if self.is_running():
            return
        self._start()
        self._lab._save()
        self.wait_ready()

    # -- internals used by Lab

    def _start(self) -> None:
        log = self._agent_log()
        self._boot_log_offset = log.stat().st_size if log is not None and log.exists() else 0
        cgdirs = [Path(d) for d in self._st.cgroups]
        for d in cgdirs:  # leftovers of the previous boot (payload/, supervisor/)
            nspawn.remove_cgroup_tree(d)
        self._popen = nspawn.start(self.root, self._st.machine, self.name, self._st.netns, cgdirs,
                                   self._log_path())
        self._st.nspawn_pid = self._popen.pid
        self._st.nspawn_start = nspawn.proc_start_time(self._popen.pid)

    def _stop(self) -> None:
        if self._st.nspawn_pid is not None:
            nspawn.stop(self._st.nspawn_pid, self._st.nspawn_start, self._popen)
        cgdirs = [Path(d) for d in self._st.cgroups]
        nspawn.kill_cgroups(cgdirs)
        for d in cgdirs:
            nspawn.remove_cgroup_tree(d)
        nspawn.remove_propagate_dir(self._st.machine)
        self._st.nspawn_pid = self._st.nspawn_start = None
        self._popen = None

    def _log_path(self) -> Path:
        return self._lab.state_dir / f"{self.name}.nspawn.log"

    def _agent_log(self) -> Path | None:
        """Return the controller machine agent's log as the test process sees it (None off controllers)."""
        if self.role not in ("controller", "bootstrapped") or self.machine_id is None:
            return None
        return self.root / f"var/log/juju/machine-{self.machine_id}.log"

    def _wait_jujud_settled(self, deadline: float) -> None:
        """Return once this boot's jujud on a controller got past its start: it logged "peergrouper
        started", logged an ERROR (it exits), logged that its dqlite node waits (3.x spares, forever),
        or its unit is no longer active. Real jujud (and the stand-in, standins/jujud.py) restarts a
        snap juju-db at each start (mongo.EnsureServer), so "booted" alone leaves tests racing that
        restart. Raise LabError if `deadline` passes first."""
        log = self._agent_log()
        if log is None:
            return
        settled = ("peergrouper started", " ERROR ", "for this Dqlite node to join cluster")
        next_unit_check = 0.0
        while True:
            try:
                with open(log, "rb") as f:
                    f.seek(self._boot_log_offset)
                    new = f.read().decode(errors="replace")
            except OSError:
                new = ""
            if any(mark in new for mark in settled):
                return
            if time.monotonic() >= next_unit_check:  # masked, failed or never started: nothing to wait for
                unit = f"jujud-machine-{self.machine_id}.service"
                res = self.ssh(f"systemctl is-active {unit}", timeout=30)
                if res.returncode != 255 and res.stdout.strip() not in ("active", "activating"):
                    return
                next_unit_check = time.monotonic() + 2.0
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: jujud did not finish starting (no \"peergrouper started\" in "
                               f"{log}):\n{new[-1500:]}")
            time.sleep(0.2)

    def _log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self._log_path().read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no nspawn log)"

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Return when sshd accepts and `systemctl is-system-running --wait` says running/degraded.

        Raise LabError (with the nspawn log tail) if the container dies or `timeout` passes.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_running():
                raise LabError(f"{self.name}: container exited during boot:\n{self._log_tail()}")
            try:
                with socket.create_connection((self.ip, 22), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise LabError(f"{self.name}: sshd not reachable on {self.ip}:22 after {timeout:.0f} s:\n"
                                   f"{self._log_tail()}") from None
                time.sleep(0.05)
        while True:
            left = max(1.0, deadline - time.monotonic())
            try:
                res = self.ssh("systemctl is-system-running --wait", timeout=left)
            except subprocess.TimeoutExpired:
                raise LabError(f"{self.name}: boot did not finish in {timeout:.0f} s") from None
            state = res.stdout.strip()
            if state in ("running", "degraded"):
                self._wait_jujud_settled(deadline)
                return
            if res.returncode == 255 and time.monotonic() < deadline:  # ssh itself failed: retry
                time.sleep(0.1)
                continue
            raise LabError(f"{self.name}: system state {state!r} (ssh rc {res.returncode}: "
                           f"{res.stderr.strip()[-500:]})\n{self._log_tail()}")


# --------------------------------------------------------------------------- labs

_OWNED: dict[str, Lab] = {}  # labs this process must tear down at exit
_OWNED_PID = os.getpid()


@atexit.register
def _teardown_owned() -> None:
    """At interpreter exit, tear down every lab this process created and still owns."""
    if os.getpid() != _OWNED_PID:
        return
    for lab in list(_OWNED.values()):
        with contextlib.suppress(Exception):
            lab.teardown()


class Lab:
    """A running lab: its hosts plus the OpenSSH client files to reach them."""

    def __init__(self, state: LabState) -> None:
        self._st = state
        self.hosts: list[LabHost] = [LabHost(self, h) for h in state.hosts]
        self._down = False
        self.timings: dict[str, float] = {}  # seconds per phase of create(): setup, provision, boot

    # -- public surface

    @property
    def id(self) -> str:
        """The lab id (6 hex chars): part of every name the lab creates."""
        return self._st.lab_id

    @property
    def profile(self) -> str:
        """The lab profile (juju-2.9 or juju-2.8)."""
        return self._st.profile

    @property
    def state_dir(self) -> Path:
        return _state_dir(self.id)

    @property
    def ssh_config(self) -> Path:
        return self.state_dir / "ssh_config"

    @property
    def key(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    @property
    def juju_data(self) -> Path:
        """The Juju client's data dir for the lab's controller `lab` (controllers.yaml, accounts.yaml)."""
        return self.state_dir / "juju_data"

    @property
    def controllers(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "controller"]

    @property
    def spares(self) -> list[LabHost]:
        return [h for h in self.hosts if h.role == "spare"]

    @property
    def bootstrapped(self) -> list[LabHost]:
        """The bootstrapped spares boot0, boot1, … (`bootstrapped_spares=`): each an empty controller
        of the lab's profile, as `juju bootstrap` leaves one (its own CA, controller UUID, juju-db,
        jujud, only the controller model; on 3.x its own dqlite node), machine 0 of its controller."""
        return [h for h in self.hosts if h.role == "bootstrapped"]

    @property
    def workloads(self) -> list[LabHost]:
        """The workload machines m0, m1, … (`machines=`): Juju machines running workload agents."""
        return [h for h in self.hosts if h.role == "workload"]

    def host(self, name: str) -> LabHost:
        """Return the host called `name` (ctl0, spare0, …). Raise KeyError if there is none."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"lab {self.id} has no host {name!r} (has {[h.name for h in self.hosts]})")

    def describe(self) -> dict[str, Any]:
        """Return the JSON document `python -m tests.lab up` prints."""
        return {
            "lab_id": self.id,
            "ssh_config": str(self.ssh_config), "key": str(self.key), "known_hosts": str(self.known_hosts),
            "juju_data": str(self.juju_data) if (self.juju_data / "controllers.yaml").exists() else None,
            "hosts": [{"name": h.name, "ip": h.ip, "role": h.role, "machine_id": h.machine_id,
                       "profile": h.profile, "root": str(h.root)} for h in self.hosts],
        }

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # -- creation

    @classmethod
    def create(cls, controllers: int = 1, spares: int = 0, profile: str = "juju-2.9", db_size: int | str = 0,
               cli_name: str | None = None, machines: int = 0, bootstrapped_spares: int = 0) -> Lab:
        """Build and boot a lab; return it when every host is ready (owned by this process).

        `bootstrapped_spares` hosts boot0, boot1, … are each a freshly bootstrapped controller of the
        profile with an identity of its own (Lab.bootstrapped).

        `machines` workload machines m0, m1, … (machine ids after the controllers', alternately in
        the controller model and the hosted model "default") run stand-in workload agents.

        Clears leftovers of dead labs first (and the previous CLI lab called `cli_name`, if given).
        Raise LabError (after removing whatever was made) if any step fails.
        """
        require_root()
        if profile not in PROFILES:
            raise LabError(f"unknown profile {profile!r} (choose from {', '.join(PROFILES)})")
        if min(controllers, spares, machines, bootstrapped_spares) < 0 or (
                controllers + spares + bootstrapped_spares == 0):
            raise LabError("a lab needs at least one host")
        size = parse_size(db_size)
        lower = rootfs.ensure_rootfs()
        with global_lock():
            sweep_leftovers(cli_name=cli_name)
            state = cls._allocate(controllers, spares, profile, size, lower, cli_name, machines,
                                  bootstrapped_spares)
            lab = cls(state)
            lab.state_dir.mkdir(mode=0o700)
            _write_state(state)
            net.ensure_bridge()
            nspawn.ensure_inotify_instances()
        _OWNED[lab.id] = lab
        try:
            lab._build()
            t0 = time.monotonic()
            lab._boot()
            lab.timings["boot"] = time.monotonic() - t0
        except BaseException:
            try:
                lab.teardown()
            except LabError as err:
                log(f"while cleaning up a failed lab: {err}")
            raise
        return lab

    @staticmethod
    def _allocate(controllers: int, spares: int, profile: str, size: int, lower: Path,
                  cli_name: str | None, machines: int = 0, bootstrapped: int = 0) -> LabState:
        """Pick a free lab id and free IPs (caller holds the global lock); return the new state."""
        existing = _lab_ids()
        used = {h.ip for i in existing if (s := _read_state(i)) for h in s.hosts}
        while True:
            lab_id = secrets.token_hex(3)
            if lab_id not in existing:
                break
        names: list[tuple[str, Role, str | None]] = [
            (f"ctl{i}", "controller", str(i)) for i in range(controllers)]
        names += [(f"spare{i}", "spare", None) for i in range(spares)]
        names += [(f"boot{i}", "bootstrapped", "0") for i in range(bootstrapped)]
        names += [(f"m{i}", "workload", str(controllers + i)) for i in range(machines)]
        free = [f"{net.SUBNET}.{n}" for n in net.POOL if f"{net.SUBNET}.{n}" not in used]
        if len(free) < len(names):
            raise LabError(f"IP pool exhausted ({len(used)} lab hosts exist); tear some labs down")
        hosts = []
        for (name, role, mid), addr in zip(names, free, strict=False):
            hosts.append(HostState(
                name=name, ip=addr, role=role, machine_id=mid, profile=profile,
                netns=net.netns_name(lab_id, name), veth=net.veth_name(lab_id, addr),
                machine=net.netns_name(lab_id, name), base=str(DATA_ROOT / lab_id / name),
                cgroups=[str(d) for d in nspawn.host_cgroup_dirs(lab_id, name)],
            ))
        return LabState(lab_id=lab_id, profile=profile, db_size=size, rootfs=str(lower), hosts=hosts,
                        owner_pid=os.getpid(), owner_start=nspawn.proc_start_time(os.getpid()),
                        cli_name=cli_name)

    def _build(self) -> None:
        """Mount overlays, create networks, write identities and keys, provision every host."""

        t0 = time.monotonic()
        client_private, client_public = _ed25519()
        _write(self.key, client_private, 0o600)
        _write(self.key.with_name("id_ed25519.pub"), client_public + "\n", 0o644)
        etc_hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + "".join(
            f"{h.ip}\t{h.name}\n" for h in self.hosts)
        known, config = [], []
        for h in self.hosts:
            st = h._st
            base = Path(st.base)
            for sub in ("upper", "work", "merged"):
                (base / sub).mkdir(parents=True, exist_ok=True)
            res = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                                  f"lowerdir={self._st.rootfs},upperdir={base}/upper,workdir={base}/work",
                                  str(st.merged)], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise LabError(f"{h.name}: overlay mount failed: {res.stderr.strip()}")
            net.create_host_net(st.netns, st.veth, st.ip)
            root = h.root
            _write(root / "etc/hostname", f"{h.name}\n", 0o644)
            _write(root / "etc/hosts", etc_hosts, 0o644)
            host_private, host_public = _ed25519()
            _write(root / "etc/ssh/ssh_host_ed25519_key", host_private, 0o600)
            _write(root / "etc/ssh/ssh_host_ed25519_key.pub", f"{host_public} root@{h.name}\n", 0o644)
            known.append(f"{h.name},{h.ip} {host_public}\n")
            config.append(f"Host {h.name}\n  HostName {h.ip}\n  User root\n  IdentityFile {self.key}\n"
                          f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
                          f"  StrictHostKeyChecking yes\n\n")
        if self.workloads:  # Juju reaches machines by address as ubuntu: no User for the addresses
            config.append(f"Host {' '.join(h.ip for h in self.workloads)}\n  IdentityFile {self.key}\n"
                          f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
                          f"  StrictHostKeyChecking yes\n\n")
        _write(self.known_hosts, "".join(known), 0o644)
        _write(self.ssh_config, "".join(config), 0o644)
        specs = {h.name: provision.HostSpec(name=h.name, ip=h.ip, role=h.role, machine_id=h.machine_id,
                                            profile=h.profile) for h in self.hosts}
        self.timings["setup"] = time.monotonic() - t0
        t0 = time.monotonic()
        cluster = provision.new_cluster(self.profile, controllers=[specs[h.name] for h in self.controllers],
                                        db_size=self._st.db_size,
                                        workloads=[specs[h.name] for h in self.workloads])
        if self.controllers:
            write_juju_data(self.juju_data, cluster)
        for h in self.hosts:
            if h.role == "bootstrapped":  # `juju bootstrap` there: a controller of its own
                own = replace(specs[h.name], role="controller")
                provision.provision_host(h.root, own, provision.new_cluster(
                    self.profile, controllers=[own], hosted_models=False))
            else:
                provision.provision_host(h.root, specs[h.name], cluster)
            _authorize(h.root, "/root", "root", client_public)
            _authorize(h.root, "/home/ubuntu", "ubuntu", client_public)
        self.timings["provision"] = time.monotonic() - t0

    def _boot(self) -> None:
        """Start every container, record the pids, wait until all are ready (in parallel)."""
        try:
            for h in self.hosts:
                h._start()
        finally:
            self._save()
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            for fut in [pool.submit(h.wait_ready) for h in self.hosts]:
                fut.result()

    def _save(self) -> None:
        if not self._down:
            _write_state(self._st)

    def detach(self) -> None:
        """Leave the lab running after this process exits (CLI `up`): it is no longer owned by anyone."""
        self._st.owner_pid = self._st.owner_start = None
        self._save()
        _OWNED.pop(self.id, None)

    # -- teardown

    @classmethod
    def load(cls, lab_id: str) -> Lab:
        """Return the lab recorded in /run/jujubackup-lab/<lab_id>. Raise LabError if there is none."""
        state = _read_state(lab_id)
        if state is None:
            raise LabError(f"no lab {lab_id!r} in {STATE_ROOT}")
        return cls(state)

    @classmethod
    def find_cli(cls, cli_name: str) -> Lab | None:
        """Return the CLI lab called `cli_name`, or None."""
        for lab_id in _lab_ids():
            state = _read_state(lab_id)
            if state is not None and state.cli_name == cli_name:
                return cls(state)
        return None

    def teardown(self) -> None:
        """Remove every process, mount, netns, veth, cgroup dir and file this lab made (idempotent).

        The bridge goes too when no other lab remains. Errors on one host do not stop the others;
        raise LabError at the end if something could not be removed.
        """
        if self._down:
            return
        errors: list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
            for h, fut in [(h, pool.submit(h._stop)) for h in self.hosts]:
                try:
                    fut.result()
                except Exception as err:
                    errors.append(f"{h.name}: stop: {err}")
        for h in self.hosts:
            try:
                _umount(h.root)
                net.remove_host_net(h._st.netns, h._st.veth, h.ip)
            except Exception as err:
                errors.append(f"{h.name}: {err}")
        for d in nspawn.lab_cgroup_dirs(self.id):
            nspawn.kill_cgroups([d])
            nspawn.remove_cgroup_tree(d)
        try:
            _rm_tree(DATA_ROOT / self.id)
        except LabError as err:
            errors.append(str(err))
        with global_lock():
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self._down = True
            _OWNED.pop(self.id, None)
            _remove_shared_if_unused()
        if errors:
            raise LabError(f"lab {self.id} teardown incomplete: " + "; ".join(errors))


def write_juju_data(path: Path, cluster: provision.Cluster) -> None:
    """Write the Juju client files `juju bootstrap` leaves for the controller (named `lab`, user
    `admin`): controllers.yaml (0644), accounts.yaml with the password (0600) and an empty
    cookies/lab.json, in the layout of
    juju/juju jujuclient/controllers.go ControllerDetails and jujuclient/accounts.go AccountDetails."""
    path.mkdir(mode=0o700, exist_ok=True)
    ca = "".join(f"      {line}\n" for line in cluster.ca_cert.strip().splitlines())
    ctrls = cluster.controllers
    _write(path / "controllers.yaml",
           "controllers:\n  lab:\n"
           f"    uuid: {cluster.controller_uuid}\n"
           f"    api-endpoints: [{', '.join(repr(f'{c.ip}:17070') for c in ctrls)}]\n"
           f"    ca-cert: |\n{ca}"
           "    cloud: localhost\n    region: localhost\n    type: lxd\n"
           f"    agent-version: {cluster.spec.juju_version}\n"
           f"    controller-machine-count: {len(ctrls)}\n"
           f"    active-controller-machine-count: {len(ctrls)}\n"
           f"    machine-count: {len(ctrls) + len(cluster.workloads)}\n"
           "current-controller: lab\n", 0o644)
    # the CLI's macaroon cookie jar (juju/persistent-cookiejar), empty for a password login; libjuju
    # (juju/client/jujudata.py cookies_for_controller) opens it
    (path / "cookies").mkdir(mode=0o700, exist_ok=True)
    _write(path / "cookies" / "lab.json", "[]\n", 0o600)
    accounts = path / "accounts.yaml"
    accounts.unlink(missing_ok=True)
    fd = os.open(accounts, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
    with os.fdopen(fd, "w") as f:
        f.write("controllers:\n  lab:\n    user: admin\n"
                f"    password: {cluster.admin_password}\n    last-known-access: superuser\n")


def _remove_shared_if_unused() -> None:
    """With the global lock held: remove the bridge and empty base dirs if no lab remains."""
    if _lab_ids():
        return
    net.remove_bridge()
    for root in nspawn.cgroup_roots():
        with contextlib.suppress(OSError):
            (root / nspawn.CG_NAME).rmdir()
    with contextlib.suppress(OSError):
        DATA_ROOT.rmdir()
    for empty in (nspawn.PROPAGATE_DIR, nspawn.PROPAGATE_DIR.with_name("locks"), nspawn.PROPAGATE_DIR.parent):
        with contextlib.suppress(OSError):
            empty.rmdir()  # nspawn's own dirs, created by our boots; only removed when empty


def sweep_leftovers(cli_name: str | None = None) -> list[str]:
    """Tear down labs whose owner died (and the CLI lab `cli_name`), then remove our orphaned names.

    Orphans are names with our prefixes whose lab id has no state dir: cgroup dirs under
    jujubackup-lab/ (their processes are killed first), overlay mounts and dirs under
    /var/lib/jujubackup-lab, netns jb-<id>-*, veths jb<id>-*, nspawn propagate dirs jb-<id>-*.
    Return the ids of labs torn down.
    """
    cleared: list[str] = []
    with global_lock():
        for lab_id in _lab_ids():
            state = _read_state(lab_id)
            if state is None:
                if _raw_owner_alive(lab_id):
                    continue  # written by another version of this code whose owner still runs
                if time.time() - _state_dir(lab_id).stat().st_mtime > 5:  # half-written: creator died
                    shutil.rmtree(_state_dir(lab_id), ignore_errors=True)
                    cleared.append(lab_id)
                continue
            detached = state.owner_pid is None
            dead = (not detached and not state.owner_alive()) or (
                detached and cli_name is not None and state.cli_name == cli_name)
            if dead:
                with contextlib.suppress(LabError):
                    Lab(state).teardown()
                cleared.append(lab_id)
        _remove_orphans(set(_lab_ids()))
        _remove_shared_if_unused()
    return cleared


def _raw_owner_alive(lab_id: str) -> bool:
    """Return True if lab `lab_id`'s state.json names an owner pid that still runs (schema-agnostic)."""
    try:
        doc = json.loads((_state_dir(lab_id) / "state.json").read_text())
        return isinstance(doc.get("owner_pid"), int) and nspawn.is_alive(doc["owner_pid"])
    except (OSError, ValueError, AttributeError):
        return False


def _remove_orphans(live: set[str]) -> None:
    """Remove resources named with our prefixes whose lab id is not in `live` (global lock held)."""
    for root in nspawn.cgroup_roots():
        base = root / nspawn.CG_NAME
        if base.is_dir():
            for d in base.iterdir():
                if d.is_dir() and d.name not in live:
                    nspawn.kill_cgroups([d])
                    nspawn.remove_cgroup_tree(d)
    for mnt in _mounts_under(DATA_ROOT):
        rel = mnt.relative_to(DATA_ROOT).parts
        if rel and rel[0] not in live:
            _umount(mnt)
    if DATA_ROOT.is_dir():
        for d in DATA_ROOT.iterdir():
            if d.is_dir() and LAB_ID_RE.match(d.name) and d.name not in live:
                with contextlib.suppress(LabError):
                    _rm_tree(d)
    for name in net.list_links():
        m = net.VETH_RE.match(name)
        if m and m.group(1) not in live:
            net.ip("link", "del", name, check=False)
    for name in net.list_netns():
        m = net.NETNS_RE.match(name)
        if m and m.group(1) not in live:
            net.ip("netns", "del", name, check=False)
    if nspawn.PROPAGATE_DIR.is_dir():
        for d in nspawn.PROPAGATE_DIR.iterdir():
            m = net.NETNS_RE.match(d.name)
            if m and m.group(1) not in live:
                nspawn.remove_propagate_dir(d.name)


def resources_of(lab_id: str, pids: list[int] | None = None) -> dict[str, list[str]]:
    """Return what exists on this machine of lab `lab_id`, by kind (empty lists = nothing left).

    Looks by name prefix (not by the state file): state dir, netns, veths, mounts and dirs under
    /var/lib/jujubackup-lab/<id>, cgroup dirs, nspawn propagate dirs, and which of `pids` still run.
    """
    found: dict[str, list[str]] = {
        "state_dir": [str(p) for p in [_state_dir(lab_id)] if p.exists()],
        "netns": [n for n in net.list_netns() if (m := net.NETNS_RE.match(n)) and m.group(1) == lab_id],
        "veth": [n for n in net.list_links() if (m := net.VETH_RE.match(n)) and m.group(1) == lab_id],
        "mounts": [str(p) for p in _mounts_under(DATA_ROOT / lab_id)],
        "data_dir": [str(p) for p in [DATA_ROOT / lab_id] if p.exists()],
        "cgroups": [str(d) for d in nspawn.lab_cgroup_dirs(lab_id) if d.exists()],
        "propagate": [],
        "pids": [str(p) for p in pids or [] if nspawn.is_alive(p)],
    }
    if nspawn.PROPAGATE_DIR.is_dir():
        found["propagate"] = [d.name for d in nspawn.PROPAGATE_DIR.iterdir()
                              if (m := net.NETNS_RE.match(d.name)) and m.group(1) == lab_id]
    return found


def lab_status() -> list[dict[str, Any]]:
    """Return one summary per lab on this machine (id, CLI name, owner, hosts with running flag)."""
    out: list[dict[str, Any]] = []
    for lab_id in _lab_ids():
        state = _read_state(lab_id)
        if state is None:
            out.append({"lab_id": lab_id, "state": "unreadable"})
            continue
        lab = Lab(state)
        owner = "detached (CLI)" if state.owner_pid is None else (
            f"pid {state.owner_pid}" + ("" if state.owner_alive() else " (dead)"))
        out.append({**lab.describe(), "cli_name": state.cli_name, "owner": owner,
                    "running": {h.name: h.is_running() for h in lab.hosts}})
    return out


def log(msg: str) -> None:
    """Print a progress line for humans on stderr."""
    print(f"lab: {msg}", file=sys.stderr, flush=True)
