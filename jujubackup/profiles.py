"""Controller profiles as DATA: one row per Juju era/layout, chosen by the probe.

A profile says where a controller keeps things and how its tools are called: init system, service
names, mongo tool paths, TLS flags, data dirs, the file list of `root.tar`, dump flags and which
consistency modes `create` supports. Templates read these values; nothing else branches on versions.

Facts: reference juju-backups.md §3.5 (files), §3.6 (init systems), §4 (tools, flags).
"""

from __future__ import annotations

import re
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
    detect_juju: str = ""
    """When set, the Juju version (agent.conf upgradedToVersion, else the backup's) must start with it."""
    detect_mongod: str = ""
    """When set, `mongod --version` must report a version starting with it."""
    snap: bool = False
    """juju-db is the snap: the unit is snapd's, mongod reads SNAP_COMMON/juju-db.config."""
    shell_version_guess: str = ""
    """The mongo shell version this layout ships, as X.Y.Z: the probe's queries start with its TLS
    spelling (MIN_TLS_SPELLING) while the shell's own --version is read, and run again only when
    that version has another spelling. A wrong guess costs one shell start, never a wrong answer."""

    def matches(self, existing: set[str], juju_version: str = "", mongod_version: str = "") -> bool:
        """Given the probe paths that exist, the Juju version and mongod's version ('' = unknown),
        return True when this profile describes the host. An unknown version matches no profile that
        asks for one."""
        return (
            all(p in existing for p in self.detect_paths)
            and juju_version.startswith(self.detect_juju)
            and mongod_version.startswith(self.detect_mongod)
        )

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
    snap=True,
    shell_version_guess="4.4.0",  # the juju-db 4.4 snap
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
    shell_version_guess="3.2.0",  # juju-mongodb3.2
)

JUJU_28_BIONIC = replace(
    JUJU_28,
    name="juju-2.8-bionic",
    era="Juju 2.x on bionic with the distro's mongodb-server-core 3.6 (/usr/bin), systemd",
    mongod="/usr/bin/mongod",
    mongodump="/usr/bin/mongodump",
    mongorestore="/usr/bin/mongorestore",
    mongo_shell="/usr/bin/mongo",
    detect_paths=("/usr/bin/mongodump", f"{DATA_DIR}/db", "/etc/systemd/system/juju-db.service"),
    shell_version_guess="3.6.0",  # bionic's mongodb-server-core 3.6
)
"""The 2.8 deb layout with the distro's mongo tools in /usr/bin instead of juju-mongodb3.2's."""

JUJU_28_FOCAL = replace(
    JUJU_29,
    name="juju-2.8-focal",
    era="Juju 2.8 on focal, juju-db 4.0/stable snap (mongo 4.0.9, tools r4.0.9), systemd",
    detect_mongod="4.0.",
    shell_version_guess="4.0.0",  # the juju-db 4.0 snap
)
"""Juju 2.8 on focal: the juju-db 4.0/stable snap (J28 controller/config.go:279; 4.0.9 per
juju/juju#10111). Same layout as 2.9's snap; its tools and shell know only the --ssl* spellings
(MONGO_TLS_RULES)."""

JUJU_36 = replace(
    JUJU_29,
    name="juju-3.6",
    era="Juju 3.x, juju-db 4.4 snap (4.4.30+: client certificates required), systemd",
    tools_dir_style="base",
    detect_juju="3.",
)
"""Juju 3.x: the 2.9 snap layout; agent.conf without `mongoversion` (J36 agent/format-2.0.go), tools
dirs `<version>-ubuntu-<arch>` (J36 core/semversion Binary), machines with a base instead of a
series; juju-db 4.4.30 requires a client certificate chaining to SNAP_COMMON/ca.crt (juju/juju#22455)."""

PROFILES: tuple[Profile, ...] = (JUJU_36, JUJU_28_FOCAL, JUJU_29, JUJU_28, JUJU_28_BIONIC)
"""In detection order: the first profile that matches (Profile.matches) wins."""

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
    paths: list[str] = [*UPSTART_MARKERS, CA_FILE]
    for profile in PROFILES:
        paths += [*profile.detect_paths, *profile.tool_paths().values()]
    return sorted(set(paths))


def detect(
    existing: set[str], agent_conf_format: str = "", juju_version: str = "", mongod_version: str = ""
) -> Profile:
    """Given the set of probe paths that exist, agent.conf's `# format` value, the Juju version and
    mongod's version ('' = unknown), return the profile.

    Raise RefusedError for an upstart/1.x controller or a layout no profile matches.
    """
    if agent_conf_format.startswith("1.") or any(p in existing for p in UPSTART_MARKERS):
        raise RefusedError(
            "this is a Juju 1.x controller (upstart, agent.conf format 1.18): not supported",
            hint="back it up with Juju 1.x's own `juju backups create`, or upgrade the controller first",
        )
    for profile in PROFILES:
        if profile.matches(existing, juju_version, mongod_version):
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


# --------------------------------------------------------------------------- TLS of the mongo tools

CA_FILE = f"{SNAP_COMMON}/ca.crt"
"""juju-db's CA on a snap controller. When it exists, the tools and the shell present the controller
certificate (CLIENT_CERT) and check the server against it, as Juju does since juju/juju#22271 (made
unconditional after the 4.4.30-only branch of state/backups/db.go @07d78520; scripts/mongo-client.sh
switches on the file's existence): juju-db 4.4.30 refuses a client without a certificate (#22455)."""
CLIENT_CERT = f"{SNAP_COMMON}/server.pem"
"""The certificate and key the tools present to juju-db when CA_FILE exists (Juju presents the same)."""

MIN_TLS_SPELLING: dict[str, tuple[tuple[str, str], ...]] = {
    # (release branch "X.Y" or "*" for any, first version of it that knows the spelling)
    "tools": (("3.6", "3.6.21"), ("4.0", "4.0.21"), ("*", "4.2.0")),
    "shell": (("*", "4.2.0"),),
}
"""Which versions know the --tls* spellings. Tools: `--tlsInsecure` (mongo-tools
common/options/options.go: absent at r3.2.22, r3.6.3 and r4.0.0-r4.0.18, present from r3.6.21,
r4.0.21, r4.2 and in every 100.x). Shell: `--tls*` arrived with MongoDB 4.2 (4.2 release notes,
"TLS options"); 3.2, 3.6 and 4.0 shells refuse them ("unrecognised option")."""

TLS_FLAGS: dict[tuple[str, str, bool], tuple[str, ...]] = {
    # (role, spelling, with the client certificate) -> flags
    ("tools", "ssl", False): ("--ssl", "--sslAllowInvalidCertificates"),  # J28/J29 db.go options
    ("tools", "tls", False): ("--ssl", "--tlsInsecure"),  # 100.x: --ssl* + --tlsInsecure, no --tls
    # Juju's own 4.4.30 spelling (db.go @07d78520) in every tools version; the password "ignore" keeps
    # a tool from prompting for one on stdin, where our statepassword arrives. Host names are not
    # checked: we dial 127.0.0.1 and Juju's certificate names localhost/juju-mongodb, no address.
    ("tools", "ssl", True): (
        "--ssl", "--sslCAFile", CA_FILE, "--sslPEMKeyFile", CLIENT_CERT, "--sslPEMKeyPassword", "ignore",
        "--sslAllowInvalidHostnames",
    ),
    ("tools", "tls", True): (
        "--ssl", "--sslCAFile", CA_FILE, "--sslPEMKeyFile", CLIENT_CERT, "--sslPEMKeyPassword", "ignore",
        "--sslAllowInvalidHostnames",
    ),
    ("shell", "ssl", False): ("--ssl", "--sslAllowInvalidCertificates"),
    ("shell", "tls", False): ("--tls", "--tlsAllowInvalidCertificates"),
    ("shell", "ssl", True): (
        "--ssl", "--sslCAFile", CA_FILE, "--sslPEMKeyFile", CLIENT_CERT, "--sslAllowInvalidHostnames",
    ),
    # scripts/mongo-client.sh's spelling (--tlsCertificateKeyFile + --tlsCAFile)
    ("shell", "tls", True): (
        "--tls", "--tlsCAFile", CA_FILE, "--tlsCertificateKeyFile", CLIENT_CERT, "--tlsAllowInvalidHostnames",
    ),
}
"""The TLS flags of each role by spelling and client certificate. The remote scripts choose among
them at run time (remote_scripts/lib/mongo-tls.bash.j2, from the binaries' own --version and whether
CA_FILE exists); MongoTls.choose is the same choice here, for `status` and the tests."""


def version_tuple(text: str) -> tuple[int, ...]:
    """Given a version text (`r4.0.9`, `100.9.4`, `v4.4.30-rc1`), return its first X.Y.Z as ints;
    () when there is none."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(g) for g in m.groups()) if m else ()


def knows_tls_spelling(role: str, version: str) -> bool:
    """Given a role (`tools` or `shell`) and its version text, return True when that version knows the
    --tls* spelling of MIN_TLS_SPELLING; an unknown version gets the --ssl* one (every version has it)."""
    have = version_tuple(version)
    if not have:
        return False
    for branch, first in MIN_TLS_SPELLING[role]:
        if (branch == "*" or have[:2] == version_tuple(first)[:2]) and have >= version_tuple(first):
            return True
    return False


@dataclass(frozen=True)
class MongoTls:
    """The TLS flags of one host's mongo tools and shell, chosen from their versions and CA_FILE."""

    tools: tuple[str, ...]
    shell: tuple[str, ...]
    client_cert: bool
    """The flags present CLIENT_CERT and check the server against CA_FILE."""

    @classmethod
    def choose(cls, tools_version: str, shell_version: str, ca_file: bool) -> MongoTls:
        """Given the tools' and the shell's version texts and whether CA_FILE exists, return the flags."""
        tools = "tls" if knows_tls_spelling("tools", tools_version) else "ssl"
        shell = "tls" if knows_tls_spelling("shell", shell_version) else "ssl"
        return cls(TLS_FLAGS[("tools", tools, ca_file)], TLS_FLAGS[("shell", shell, ca_file)], ca_file)


def tls_template_values() -> dict[str, object]:
    """Return what lib/mongo-tls.bash.j2 renders: the spelling table and every flag set."""
    return {
        "tls_min": {role: [list(row) for row in rows] for role, rows in MIN_TLS_SPELLING.items()},
        "tls_flags": {f"{role}_{spelling}_{int(cert)}": list(flags)
                      for (role, spelling, cert), flags in TLS_FLAGS.items()},
        "tls_ca_file": CA_FILE,
    }
