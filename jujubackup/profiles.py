"""Controller profiles as DATA: one row per Juju era/layout, chosen by the probe.

A profile says where a controller keeps things and how its tools are called: init system, service
names, mongo tool paths, TLS flags, data dirs, the file list of `root.tar`, dump flags and which
consistency modes `create` supports. Templates read these values; nothing else branches on versions.

Facts: reference juju-backups.md §3.5 (files), §3.6 (init systems), §4 (tools, flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from jujubackup.errors import RefusedError

DATA_DIR = "/var/lib/juju"
LOG_DIR = "/var/log/juju"
DEFAULT_BACKUP_DIR = "/var/lib/juju/backups"
BACKUP_DIR_MARKER = ".jujubackup-dir"
"""The file that marks a backup dir as jujubackup's own (written on first use into a dir the tool
created or found empty; a dir holding anything else is refused: create and upload delete staging
names in it and the lock chmods it 0700)."""
SYSTEM_DIRS: tuple[str, ...] = (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media",
    "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap", "/srv", "/sys", "/tmp", "/usr",
    "/usr/bin", "/usr/lib", "/usr/local", "/usr/local/bin", "/usr/sbin", "/usr/share", "/var",
    "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail", "/var/opt",
    "/var/run", "/var/snap", "/var/spool", "/var/tmp",
    DATA_DIR, f"{DATA_DIR}/agents", f"{DATA_DIR}/db", f"{DATA_DIR}/tools", f"{DATA_DIR}/init",
    f"{DATA_DIR}/raft", LOG_DIR, "/var/snap/juju-db", "/var/snap/juju-db/common",
)
"""Dirs never accepted as a backup dir (compared after normalising the path; the host compares its
realpath too). Everything under PSEUDO_FS_DIRS is refused as well."""
PSEUDO_FS_DIRS: tuple[str, ...] = ("/proc", "/sys", "/dev", "/run")

MODE_ONLINE = "online"
MODE_QUIESCE = "quiesce"
MODE_STOP = "stop"
MODES: tuple[str, ...] = (MODE_ONLINE, MODE_QUIESCE, MODE_STOP)


@dataclass(frozen=True)
class FileRule:
    """One entry of root.tar: the first existing candidate (absolute path, shell glob allowed) is taken.

    `required` rules that match nothing fail the backup.
    """

    candidates: tuple[str, ...]
    required: bool = True


@dataclass(frozen=True)
class Profile:
    """How one Juju controller layout is backed up and restored."""

    name: str
    era: str
    init_system: str
    db_service: str
    mongod: str
    mongodump: str
    mongorestore: str
    mongo_shell: str
    tls_flags: tuple[str, ...]
    """TLS flags of mongodump/mongorestore."""
    shell_tls_flags: tuple[str, ...]
    """TLS flags of the mongo shell."""
    db_path: str
    mongo_dir: str
    shared_secret: str
    server_pem: str
    ca_file: str | None
    tools_dir_style: str
    """`series` (2.x: <ver>-<series>-<arch>) or `base` (3.x: <ver>-ubuntu-<arch>)."""
    dump_flags: tuple[str, ...]
    dump_scratch_dir: str | None
    """Where a confined tool may write (snap: its common dir); None: write into the staging dir."""
    modes: tuple[str, ...]
    ignored_dbs: tuple[str, ...] = ("admin", "backups")
    root_files: tuple[FileRule, ...] = field(default_factory=tuple)
    detect_paths: tuple[str, ...] = ()
    """Every path must exist (probe) for this profile to match."""

    def jujud_service(self, machine_id: str) -> str:
        """Given a machine id, return its jujud systemd unit name."""
        return f"jujud-machine-{machine_id}"

    def supports(self, mode: str) -> bool:
        return mode in self.modes

    def tool_paths(self) -> dict[str, str]:
        """Return the mongo tool paths by role."""
        return {
            "mongod": self.mongod,
            "mongodump": self.mongodump,
            "mongorestore": self.mongorestore,
            "mongo": self.mongo_shell,
        }


def _root_files(shared_secret_candidates: tuple[str, ...]) -> tuple[FileRule, ...]:
    """Return the 2.x–3.x root.tar file list (reference §3.5)."""
    return (
        FileRule((f"{DATA_DIR}/agents/machine-*",)),
        FileRule((f"{DATA_DIR}/init",), required=False),
        FileRule((f"{DATA_DIR}/tools",)),
        FileRule((f"{DATA_DIR}/system-identity",)),
        FileRule((f"{DATA_DIR}/server.pem",)),
        FileRule(shared_secret_candidates),
        FileRule((f"{DATA_DIR}/nonce.txt",), required=False),
        FileRule(("/home/ubuntu/.ssh/authorized_keys",), required=False),
    )


SNAP_COMMON = "/var/snap/juju-db/common"

RESTORE_JOURNAL_DIR = "/var/lib/jujubackup-restore"
"""restore's journal dir on a target (restore.execute.JOURNAL_DIR): present while a restore is unfinished."""

JUJU_29 = Profile(
    name="juju-2.9",
    era="Juju 2.9/3.x, juju-db snap (mongo 4.4, tools 100.x), systemd",
    init_system="systemd",
    db_service="snap.juju-db.daemon",
    mongod="/snap/bin/juju-db.mongod",
    mongodump="/snap/bin/juju-db.mongodump",
    mongorestore="/snap/bin/juju-db.mongorestore",
    mongo_shell="/snap/bin/juju-db.mongo",
    tls_flags=("--ssl", "--tlsInsecure"),  # tools 100.x: --ssl* options + --tlsInsecure (no --tls)
    shell_tls_flags=("--tls", "--tlsAllowInvalidCertificates"),
    db_path=f"{SNAP_COMMON}/db",
    mongo_dir=SNAP_COMMON,
    shared_secret=f"{SNAP_COMMON}/shared-secret",
    server_pem=f"{SNAP_COMMON}/server.pem",
    ca_file=f"{SNAP_COMMON}/ca.crt",
    tools_dir_style="series",
    dump_flags=("--oplog",),
    dump_scratch_dir=SNAP_COMMON,
    modes=(MODE_ONLINE, MODE_QUIESCE, MODE_STOP),
    root_files=_root_files((f"{DATA_DIR}/shared-secret", f"{SNAP_COMMON}/shared-secret")),
    detect_paths=("/snap/bin/juju-db.mongodump", f"{SNAP_COMMON}/db"),
)

JUJU_28 = Profile(
    name="juju-2.8",
    era="Juju 2.x, juju-mongodb3.2 deb layout (tools 3.2), systemd",
    init_system="systemd",
    db_service="juju-db",
    mongod="/usr/lib/juju/mongo3.2/bin/mongod",
    mongodump="/usr/lib/juju/mongo3.2/bin/mongodump",
    mongorestore="/usr/lib/juju/mongo3.2/bin/mongorestore",
    mongo_shell="/usr/lib/juju/mongo3.2/bin/mongo",
    tls_flags=("--ssl", "--sslAllowInvalidCertificates"),
    shell_tls_flags=("--ssl", "--sslAllowInvalidCertificates"),
    db_path=f"{DATA_DIR}/db",
    mongo_dir=DATA_DIR,
    shared_secret=f"{DATA_DIR}/shared-secret",
    server_pem=f"{DATA_DIR}/server.pem",
    ca_file=None,
    tools_dir_style="series",
    dump_flags=("--oplog",),
    dump_scratch_dir=None,
    modes=(MODE_ONLINE, MODE_QUIESCE, MODE_STOP),
    root_files=_root_files((f"{DATA_DIR}/shared-secret",)),
    detect_paths=("/usr/lib/juju/mongo3.2/bin/mongodump", f"{DATA_DIR}/db"),
)

JUJU_2_SYSTEM_MONGO = replace(
    JUJU_28,
    name="juju-2.x-mongo3.6",
    era="Juju 2.x on bionic with the distro's mongodb-server-core 3.6 (/usr/bin), systemd",
    mongod="/usr/bin/mongod",
    mongodump="/usr/bin/mongodump",
    mongorestore="/usr/bin/mongorestore",
    mongo_shell="/usr/bin/mongo",
    detect_paths=("/usr/bin/mongodump", f"{DATA_DIR}/db", "/etc/systemd/system/juju-db.service"),
)
"""The 2.8 deb layout with the distro's mongo tools in /usr/bin instead of juju-mongodb3.2's."""

PROFILES: tuple[Profile, ...] = (JUJU_29, JUJU_28, JUJU_2_SYSTEM_MONGO)
"""In detection order: the first profile whose detect_paths all exist wins."""

UPSTART_MARKERS: tuple[str, ...] = ("/etc/init/juju-db.conf",)
"""Paths that mark an upstart (Juju 1.x, trusty) controller, which jujubackup refuses."""


def profile_named(name: str) -> Profile:
    """Given a profile name, return the Profile. Raise RefusedError if no profile has that name."""
    for profile in PROFILES:
        if profile.name == name:
            return profile
    known = ", ".join(p.name for p in PROFILES)
    raise RefusedError(f"unknown controller profile {name!r}", hint=f"known profiles: {known}")


def probe_paths() -> list[str]:
    """Return every path the probe must test for existence to choose a profile."""
    paths: list[str] = list(UPSTART_MARKERS)
    for profile in PROFILES:
        paths += [*profile.detect_paths, *profile.tool_paths().values()]
    return sorted(set(paths))


def detect(existing: set[str], agent_conf_format: str = "") -> Profile:
    """Given the set of probe paths that exist and agent.conf's `# format` value, return the profile.

    Raise RefusedError for an upstart/1.x controller or a layout no profile matches.
    """
    if agent_conf_format.startswith("1.") or any(p in existing for p in UPSTART_MARKERS):
        raise RefusedError(
            "this is a Juju 1.x controller (upstart, agent.conf format 1.18): not supported",
            hint="back it up with Juju 1.x's own `juju backups create`, or upgrade the controller first",
        )
    for profile in PROFILES:
        if all(p in existing for p in profile.detect_paths):
            return profile
    raise RefusedError(
        "no known Juju controller layout found on this host (no juju-db tools/data where Juju puts them)",
        hint="is this a Juju 2.x/3.x controller machine? `jujubackup status` shows what was found",
    )


def check_mode(profile: Profile, mode: str) -> None:
    """Raise RefusedError unless `profile` supports consistency `mode`."""
    if mode not in MODES:
        raise RefusedError(f"unknown consistency mode {mode!r}", hint=f"use one of: {', '.join(MODES)}")
    if not profile.supports(mode):
        raise RefusedError(
            f"mode {mode!r} is not supported on a {profile.name} controller",
            hint=f"supported here: {', '.join(profile.modes)}",
        )


def space_needed(estimate: int) -> int:
    """Given the dump estimate in bytes, return the free space create needs: estimate + max(20 %, 5 GiB)."""
    return estimate + max(estimate // 5, 5 * 1024**3)
