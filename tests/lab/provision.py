"""Provision lab hosts as real Juju controllers / spare machines (test code, never shipped).

LAB-INFRA calls, before booting each container (we run as root, `root` is the host's merged dir):

    cluster = new_cluster(profile, controllers=[HostSpec, ...], db_size=0)   # once per lab
    provision_host(root, host, cluster)                                       # per host

A controller gets the layout of issue 2 §2 (agent.conf, server.pem, system-identity, shared-secret,
nonce.txt, tools dir + machine-N symlink, authorized_keys, machine-N.log, the juju-db unit of the
profile and jujud-machine-N.service + exec-start script, enabled) and a seeded juju-db data directory
in the stand-in mongod's storage format (tests/lab/standins/common.py).  A spare gets only the
profile's stand-in mongo binaries, as the package/snap would install them.

Helpers for tests: `read_db(root, profile)`, `PROFILES`, `Cluster` (controller_uuid, model_uuid,
default_model_uuid, passwords[machine_id], ...).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import shutil
import string
import struct
import tempfile
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.lab import oldbash, release_gates
from tests.lab.standins import common, snapd, storage, versions
from tests.lab.standins.clientapi import user_password_hash
from tests.lab.standins.jujud import agent_password_hash

STANDINS_SRC = Path(__file__).resolve().parent / "standins"
LIB_DIR = "/usr/lib/jujubackup-lab"
HOST_PYTHON = "/usr/bin/python3"
SNAP_REVISION = "160"


@dataclass(frozen=True)
class HostSpec:
    """One lab host: name (ctl0/spare0), lab IP, role, Juju machine id (controllers only), profile."""

    name: str
    ip: str
    role: Literal["controller", "spare", "workload"]
    machine_id: str | None
    profile: str


@dataclass(frozen=True)
class Profile:
    """Where a Juju generation keeps things (issue 2 §2) and which juju-db generation it runs (issue 12)."""

    name: str
    juju_version: str
    series: str
    mongo_series: str  # the juju-db generation key (standins/versions.py): "3.2" "3.6" "4.0" "4.4" "4.4.30"
    mongo_version: str  # agent.conf mongoversion ("" for Juju 3.x: J36 agent/format-2.0.go has no such key)
    db_service: str  # systemd unit name without .service
    dbpath: str
    tools: dict[str, str]  # tool -> absolute path of the executable (mongod, mongodump, mongorestore, mongo)
    shared_secret: str
    mongo_pem: str  # the PEM juju-db serves (server.pem)
    extra_files: tuple[str, ...] = ()
    snap: bool = False  # juju-db is the snap (/snap/bin/juju-db.*, /var/snap/juju-db/common)
    base: bool = False  # Juju 3.x: tools dirs <version>-ubuntu-<arch> (J36 core/semversion Binary), bases

    @property
    def family(self) -> str:
        """The stand-ins' behaviour family of this juju-db ("3.2" or "4.4")."""
        return versions.family(self.mongo_series)

    @property
    def nested_units(self) -> bool:
        """True when the machine agent runs the unit agents inside itself (Juju 2.9.0 on: the
        deployer's nested context, worker/deployer/nested.go), False when each unit agent is its own
        jujud-unit-* service (2.8 and before, on every series: the deb and the snap juju-db alike)."""
        major, minor = (int(p) for p in self.juju_version.split(".")[:2])
        return (major, minor) >= (2, 9)

    @property
    def generation(self) -> versions.Generation:
        return versions.generation(self.mongo_series)

    @property
    def tools_os(self) -> str:
        """The OS part of a tools dir name: the series (2.x) or `ubuntu` (3.x, J36 agent/tools)."""
        return "ubuntu" if self.base else self.series


SNAP_TOOLS = {
    "mongod": "/snap/bin/juju-db.mongod",
    "mongodump": "/snap/bin/juju-db.mongodump",
    "mongorestore": "/snap/bin/juju-db.mongorestore",
    "mongo": "/snap/bin/juju-db.mongo",
}
SNAP_COMMON = "/var/snap/juju-db/common"


PROFILES: dict[str, Profile] = {
    "juju-2.9": Profile(
        name="juju-2.9",
        juju_version="2.9.42",
        series="focal",
        mongo_series="4.4",
        mongo_version="4.4.18/wiredTiger",
        db_service="snap.juju-db.daemon",
        dbpath=f"{SNAP_COMMON}/db",
        tools=SNAP_TOOLS,
        shared_secret=f"{SNAP_COMMON}/shared-secret",
        mongo_pem=f"{SNAP_COMMON}/server.pem",
        snap=True,
    ),
    "juju-2.8": Profile(
        name="juju-2.8",
        juju_version="2.8.10",
        series="xenial",  # juju-mongodb3.2 is the xenial package (J28 packaging/dependency/mongo.go)
        mongo_series="3.2",
        mongo_version="3.2.22/wiredTiger",
        db_service="juju-db",
        dbpath="/var/lib/juju/db",
        tools={
            t: f"/usr/lib/juju/mongo3.2/bin/{t}" for t in ("mongod", "mongodump", "mongorestore", "mongo")
        },
        shared_secret="/var/lib/juju/shared-secret",
        mongo_pem="/var/lib/juju/server.pem",
    ),
    # Juju 2.8 on bionic: the distro's mongodb-server-core + mongodb-clients 3.6.3 in /usr/bin
    # (J28 packaging/dependency/mongo.go, mongo/mongo.go), the deb layout under /var/lib/juju
    "juju-2.8-bionic": Profile(
        name="juju-2.8-bionic",
        juju_version="2.8.10",
        series="bionic",
        mongo_series="3.6",
        mongo_version="3.6.3/wiredTiger",
        db_service="juju-db",
        dbpath="/var/lib/juju/db",
        tools={t: f"/usr/bin/{t}" for t in ("mongod", "mongodump", "mongorestore", "mongo")},
        shared_secret="/var/lib/juju/shared-secret",
        mongo_pem="/var/lib/juju/server.pem",
    ),
    # Juju 2.8 on focal: the juju-db 4.0/stable snap (J28 controller/config.go:279), 4.0.9 (juju/juju#10111)
    "juju-2.8-focal": Profile(
        name="juju-2.8-focal",
        juju_version="2.8.10",
        series="focal",
        mongo_series="4.0",
        mongo_version="4.0.9/wiredTiger",
        db_service="snap.juju-db.daemon",
        dbpath=f"{SNAP_COMMON}/db",
        tools=SNAP_TOOLS,
        shared_secret=f"{SNAP_COMMON}/shared-secret",
        mongo_pem=f"{SNAP_COMMON}/server.pem",
        snap=True,
    ),
    # Juju 3.6 on jammy with the juju-db 4.4.30/stable snap (scripts/set-juju-db-snap-channel.bash):
    # mutual TLS with ca.crt, no `mongoversion` in agent.conf, `<version>-ubuntu-<arch>` tools dirs
    "juju-3.6": Profile(
        name="juju-3.6",
        juju_version="3.6.21",
        series="jammy",
        mongo_series="4.4.30",
        mongo_version="",
        db_service="snap.juju-db.daemon",
        dbpath=f"{SNAP_COMMON}/db",
        tools=SNAP_TOOLS,
        shared_secret=f"{SNAP_COMMON}/shared-secret",
        mongo_pem=f"{SNAP_COMMON}/server.pem",
        snap=True,
        base=True,
    ),
}

SNAP_BIN = f"/snap/juju-db/{SNAP_REVISION}/bin"


@dataclass
class Cluster:
    """Shared identity of one lab's controller (same CA/uuids/data on every HA member)."""

    profile: str
    controllers: list[HostSpec]
    db_size: int = 0
    controller_uuid: str = ""
    model_uuid: str = ""  # the controller model
    default_model_uuid: str = ""
    passwords: dict[str, str] = field(default_factory=dict)  # machine id -> statepassword (= apipassword)
    workloads: list[HostSpec] = field(default_factory=list)  # workload machines (role "workload")
    agent_passwords: dict[str, str] = field(default_factory=dict)  # workload agent tag -> apipassword
    old_passwords: dict[str, str] = field(default_factory=dict)
    nonces: dict[str, str] = field(default_factory=dict)
    ca_cert: str = ""
    ca_key: str = ""
    controller_cert: str = ""
    controller_key: str = ""
    shared_secret: str = ""
    system_identity: str = ""
    system_identity_pub: str = ""
    client_pub: str = ""
    log_rnd: bytes = b"\0" * 5  # ObjectId bytes 4..8 of the generated log documents
    log_base: int = 0  # epoch seconds of the first generated log document
    seed_dir: str | None = None  # built lazily: the seeded dbpath every controller copies
    admin_password: str = ""  # the controller user `admin` (users collection; the lab's accounts.yaml)
    admin_salt: str = ""
    hosted_models: bool = True
    """False: only the controller model, as `juju bootstrap` leaves a controller (no model "default",
    no applications, no cross-model offers)."""

    @property
    def spec(self) -> Profile:
        """Return the Profile."""
        return PROFILES[self.profile]

    def workload_model(self, host: HostSpec) -> str:
        """Return the uuid of the model workload machine `host` belongs to: the controller model for
        the 1st, 3rd, … workload machine, the hosted model "default" for the 2nd, 4th, …"""
        index = [w.name for w in self.workloads].index(host.name)
        return self.model_uuid if index % 2 == 0 else self.default_model_uuid


# --------------------------------------------------------------------------- secrets and certificates


def _password(n: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _rsa_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _make_certs(controller_uuid: str, ips: list[str]) -> tuple[str, str, str, str]:
    """Return (ca_cert, ca_key, controller_cert, controller_key) PEMs as Juju generates them."""
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "juju"),
            x509.NameAttribute(NameOID.COMMON_NAME, 'juju-generated CA for model "juju-ca"'),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, controller_uuid),
        ]
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=7))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans: list[x509.GeneralName] = [
        x509.DNSName(n) for n in ("anything", "juju-apiserver", "juju-mongodb", "localhost")
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in [*ips, "127.0.0.1", "::1"]]
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "juju"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "*"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=7))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # serverAuth and clientAuth: Juju presents server.pem as its client certificate to juju-db 4.4.30
        # (state/backups/db.go @07d78520 --sslPEMKeyFile server.pem), which OpenSSL accepts only then
        .add_extension(
            x509.ExtendedKeyUsage(
                [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem).decode(), _rsa_pem(ca_key), cert.public_bytes(pem).decode(), _rsa_pem(key)


def _ssh_identity(comment: str) -> tuple[str, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, f"{public} {comment}"


def new_cluster(
    profile: str, controllers: list[HostSpec], db_size: int = 0, workloads: Iterable[HostSpec] = (),
    hosted_models: bool = True,
) -> Cluster:
    """Given a profile, the controller hosts and the workload machines, return the shared cluster
    identity (fresh secrets; every workload machine runs one unit, ubuntu/<machine id>). Without
    `hosted_models` the controller has only its controller model (freshly bootstrapped).

    Raise ValueError for an unknown profile or a controller without a machine id."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    for c in controllers:
        if c.machine_id is None:
            raise ValueError(f"controller {c.name} has no machine id")
    cluster = Cluster(
        profile=profile,
        controllers=sorted(controllers, key=lambda h: int(h.machine_id or 0)),
        db_size=int(db_size),
        controller_uuid=str(uuid.uuid4()),
        model_uuid=str(uuid.uuid4()),
        default_model_uuid=str(uuid.uuid4()),
        hosted_models=hosted_models,
    )
    (cluster.ca_cert, cluster.ca_key, cluster.controller_cert, cluster.controller_key) = _make_certs(
        cluster.controller_uuid, [c.ip for c in controllers]
    )
    cluster.shared_secret = base64.b64encode(os.urandom(768)).decode()
    # juju bootstrap's admin password; its salt as juju/utils RandomSalt makes one (12 bytes, base64)
    cluster.admin_password = _password()
    cluster.admin_salt = base64.b64encode(os.urandom(12)).decode()
    cluster.log_rnd = os.urandom(5)
    cluster.log_base = int(datetime.datetime.now().timestamp()) - 86400
    cluster.system_identity, cluster.system_identity_pub = _ssh_identity("juju-system-key")
    _client_private, cluster.client_pub = _ssh_identity("juju-client-key")
    first = cluster.controllers[0].machine_id if cluster.controllers else "0"
    for c in cluster.controllers:
        mid = str(c.machine_id)
        cluster.passwords[mid] = _password()
        cluster.old_passwords[mid] = secrets.token_hex(16)
        cluster.nonces[mid] = "user-admin:bootstrap" if mid == first else f"machine-{first}:{uuid.uuid4()}"
    cluster.workloads = sorted(workloads, key=lambda h: int(h.machine_id or 0))
    for w in cluster.workloads:
        mid = str(w.machine_id)
        cluster.nonces[mid] = f"machine-{first}:{uuid.uuid4()}"
        for tag in (f"machine-{mid}", f"unit-ubuntu-{mid}"):
            cluster.agent_passwords[tag] = _password()
    return cluster


# --------------------------------------------------------------------------- file helpers


def _ids(root: Path, user: str, group: str | None = None) -> tuple[int, int]:
    uid = gid = 0
    try:
        for line in (root / "etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == user:
                uid, gid = int(parts[2]), int(parts[3])
        if group:
            for line in (root / "etc/group").read_text().splitlines():
                parts = line.split(":")
                if parts[0] == group:
                    gid = int(parts[2])
    except FileNotFoundError:
        pass
    return uid, gid


def _write(root: Path, path: str, content: str | bytes, mode: int, owner: tuple[int, int] = (0, 0)) -> Path:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    tmp = p.with_name(p.name + ".provision-tmp")
    tmp.write_bytes(data)
    os.chown(tmp, *owner)
    tmp.chmod(mode)
    os.replace(tmp, p)
    return p


def _mkdir(root: Path, path: str, mode: int = 0o755, owner: tuple[int, int] = (0, 0)) -> Path:
    p = root / path.lstrip("/")
    p.mkdir(parents=True, exist_ok=True)
    os.chown(p, *owner)
    p.chmod(mode)
    return p


def _symlink(root: Path, path: str, target: str) -> None:
    p = root / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)


# --------------------------------------------------------------------------- stand-in binaries

PACKAGING = {
    "3.2": "juju-mongodb3.2, Juju 2.8 on xenial",
    "3.6": "bionic's mongodb-server-core/mongodb-clients, Juju 2.8 on bionic",
    "4.0": "juju-db 4.0/stable snap, Juju 2.8 on focal",
    "4.4": "juju-db 4.4/stable snap, Juju 2.9",
    "4.4.30": "juju-db 4.4.30/stable snap, Juju 3.6",
}


def tool_doc(key: str, tool: str) -> str:
    """Given a generation key and a tool name, return what the stand-in executable stands for."""
    gen = versions.generation(key)
    if tool == "mongod":
        return f"mongod {gen.server} ({PACKAGING[key]})"
    if tool == "mongo":
        return f"the legacy mongo shell {gen.server} ({PACKAGING[key]})"
    return f"{tool} {gen.tools} (mongo-tools of {PACKAGING[key]})"


TOOL_CALL = {
    "mongod": "mongod.main(sys.argv[1:], {series!r})",
    "mongodump": "tools.mongodump_main({series!r})",
    "mongorestore": "tools.mongorestore_main({series!r})",
    "mongo": "tools.mongo_main({series!r})",
}


def wrapper_script(
    tool: str, series: str, lib_dir: str = LIB_DIR, python: str = HOST_PYTHON, confined: bool = False
) -> str:
    """Return the thin executable for a stand-in tool ('mongod', 'mongodump', ...) of a mongo series;
    `confined`: a command of the juju-db snap, which enters the snap's confinement first
    (standins/confinement.py)."""
    module = "mongod" if tool == "mongod" else "tools"
    call = TOOL_CALL[tool].format(series=series)
    confine = "from standins import confinement\nconfinement.enter()\n" if confined else ""
    return (
        f'#!{python}\n"""Lab stand-in for {tool_doc(series, tool)}. Test code, never shipped."""\n'
        f"import sys\nsys.path.insert(0, {lib_dir!r})\n{confine}from standins import {module}\n"
        f"sys.exit({call})\n"
    )


def jujud_script(version: str, lib_dir: str = LIB_DIR, python: str = HOST_PYTHON) -> str:
    """Return the jujud stand-in executable for a Juju version string like 2.9.42-focal-amd64."""
    return (
        f'#!{python}\n"""Lab stand-in for jujud {version} (the Juju machine agent). '
        f'Test code, never shipped."""\nimport sys\nsys.path.insert(0, {lib_dir!r})\n'
        f"from standins import jujud\nsys.exit(jujud.main({version!r}))\n"
    )


def snapd_script(entry: str, what: str, lib_dir: str = LIB_DIR, python: str = HOST_PYTHON) -> str:
    """Return a thin executable running standins.snapd.<entry> (`snap`, `snapctl`, juju-db's
    daemon.start)."""
    return (
        f'#!{python}\n"""Lab stand-in for {what}. Test code, never shipped."""\nimport sys\n'
        f"sys.path.insert(0, {lib_dir!r})\nfrom standins import snapd\nsys.exit(snapd.{entry}())\n"
    )


JUJU_DB_DEFAULT_CONF = (
    "# default mongodb.conf for juju-db (the lab's copy of what the snap's default.conf sets)\n"
    "dbpath=/var/snap/juju-db/common/db\nlogpath=/var/snap/juju-db/common/logs/mongodb.log\n"
    "logappend=true\nbind_ip = 127.0.0.1\njournal=true\n"
)
"""juju/juju-db-snap snap/local/default.conf (4.4 @b4171cf): no port (27017), no replica set, no
TLS, no auth: what the daemon runs until something points `configpath` elsewhere."""


def snap_configpath(root: Path, path: str) -> None:
    """Set the juju-db snap's `configpath` in the host's snapd state (standins/snapd.py)."""
    _write(root, f"{snapd.CONFIG_DIR}/juju-db.json", json.dumps({"configpath": path}), 0o600)


def install_juju_db_snap(root: Path, spec: Profile, lib_ref: str, python: str) -> None:
    """Install what `snap install juju-db` leaves (standins/snapd.py): snapd's `snap`/`snapctl`, the
    snap's daemon command and default.conf, snapd's (disabled) unit for the daemon, and what the
    snap's install hook does: SNAP_COMMON/db and logs, default.config, configpath pointing at it."""
    _write(root, "/usr/bin/snap", snapd_script("snap_main", "snap (snapd)", lib_ref, python), 0o755)
    _write(root, "/usr/bin/snapctl", snapd_script("snapctl_main", "snapctl (snapd)", lib_ref, python), 0o755)
    _write(root, f"/snap/juju-db/{SNAP_REVISION}/commands/daemon.start",
           snapd_script("daemon_start_main", "juju-db's commands/daemon.start", lib_ref, python), 0o755)
    _write(root, f"/snap/juju-db/{SNAP_REVISION}/default.conf", JUJU_DB_DEFAULT_CONF, 0o644)
    _mkdir(root, f"{SNAP_COMMON}/db")
    _mkdir(root, f"{SNAP_COMMON}/logs")
    _write(root, f"{SNAP_COMMON}/default.config", JUJU_DB_DEFAULT_CONF, 0o644)
    snap_configpath(root, f"{SNAP_COMMON}/default.config")
    _write(root, f"/etc/systemd/system/{spec.db_service}.service", db_unit(spec), 0o644)


def install_library(root: Path, lib_dir: str = LIB_DIR) -> None:
    """Copy the stand-ins' Python package into <root><lib_dir>/standins."""
    dest = _mkdir(root, lib_dir) / "standins"
    dest.mkdir(exist_ok=True)
    for src in STANDINS_SRC.glob("*.py"):
        shutil.copyfile(src, dest / src.name)
        (dest / src.name).chmod(0o644)


def install_mongo_tools(root: Path, profile: str, lib_ref: str = LIB_DIR, python: str = HOST_PYTHON) -> None:
    """Install the profile's stand-in mongod/mongodump/mongorestore/mongo as the package or snap does.

    The library goes to <root>/usr/lib/jujubackup-lab; the executables import it from `lib_ref` (the
    path as seen when they run: LIB_DIR inside a host, <root>/usr/lib/jujubackup-lab for local tests)."""
    spec = PROFILES[profile]
    install_library(root)
    # Inside a lab host the snap's commands always run confined. Local tests (tests/host) install the
    # library under a pytest tmp dir in /tmp, which the snap's private /tmp and path rules hide from
    # the confined process itself: there the tools run unconfined, and the lab tests
    # (test_snap_confinement_rules_bite) are what prove confinement.
    confined = spec.snap and lib_ref == LIB_DIR
    for tool in ("mongod", "mongodump", "mongorestore", "mongo"):
        script = wrapper_script(tool, spec.mongo_series, lib_ref, python, confined=confined)
        if spec.snap:
            _write(root, f"{SNAP_BIN}/{tool}", script, 0o755)
        _write(root, spec.tools[tool], script, 0o755)
    if spec.snap:
        _symlink(root, "/snap/juju-db/current", SNAP_REVISION)
        _mkdir(root, "/var/snap/juju-db/common")
        _mkdir(root, f"/var/snap/juju-db/{SNAP_REVISION}")
        _symlink(root, "/var/snap/juju-db/current", SNAP_REVISION)
        install_juju_db_snap(root, spec, lib_ref, python)


# --------------------------------------------------------------------------- agent.conf and files


def _indent(pem: str) -> str:
    return "".join(f"  {line}\n" for line in pem.strip("\n").splitlines())


def agent_conf(cluster: Cluster, host: HostSpec) -> str:
    """Return agent.conf (format 2.0) for a controller machine."""
    spec, mid = cluster.spec, str(host.machine_id)
    pw = cluster.passwords[mid]
    others = [c.ip for c in cluster.controllers if c.ip != host.ip]
    api = "".join(f"- {ip}:17070\n" for ip in [host.ip, *others])
    return (
        "# format 2.0\n"
        f"tag: machine-{mid}\n"
        "datadir: /var/lib/juju\n"
        "transient-datadir: /var/run/juju\n"
        "logdir: /var/log/juju\n"
        "metricsspooldir: /var/lib/juju/metricspool\n"
        f"nonce: {cluster.nonces[mid]}\n"
        "jobs:\n- JobManageModel\n- JobHostUnits\n"
        f"upgradedToVersion: {spec.juju_version}\n"
        f"cacert: |\n{_indent(cluster.ca_cert)}"
        f"statepassword: {pw}\n"
        f"controller: controller-{cluster.controller_uuid}\n"
        f"model: model-{cluster.model_uuid}\n"
        f"apiaddresses:\n{api}"
        f"apipassword: {pw}\n"
        f"oldpassword: {cluster.old_passwords[mid]}\n"
        "loggingconfig: <root>=WARNING\n"
        "values:\n"
        f"  AGENT_SERVICE_NAME: jujud-machine-{mid}\n"
        '  CONTAINER_TYPE: ""\n'
        '  NUMA_CTL_PREFERENCE: "false"\n'
        "  PROVIDER_TYPE: lxd\n"
        f"controllercert: |\n{_indent(cluster.controller_cert)}"
        f"controllerkey: |\n{_indent(cluster.controller_key)}"
        f"caprivatekey: |\n{_indent(cluster.ca_key)}"
        "apiport: 17070\n"
        "stateport: 37017\n"
        f"sharedsecret: {cluster.shared_secret}\n"
        f"systemidentity: |\n{_indent(cluster.system_identity)}"
        + (f"mongoversion: {spec.mongo_version}\n" if spec.mongo_version else "")
        + "mongomemoryprofile: default\n"
    )


def workload_agent_conf(cluster: Cluster, host: HostSpec, tag: str) -> str:
    """Return agent.conf (format 2.0) of workload agent `tag` (machine-K or unit-ubuntu-K) on a
    workload machine, as Juju writes it for a non-controller agent (agent/format-2.0.go: no
    controller or state-serving keys): apiaddresses name every controller's API address."""
    spec = cluster.spec
    api = "".join(f"- {c.ip}:17070\n" for c in cluster.controllers)
    machine = tag.startswith("machine-")
    return (
        "# format 2.0\n"
        f"tag: {tag}\n"
        "datadir: /var/lib/juju\n"
        "transient-datadir: /var/run/juju\n"
        "logdir: /var/log/juju\n"
        "metricsspooldir: /var/lib/juju/metricspool\n"
        + (f"nonce: {cluster.nonces[str(host.machine_id)]}\n" if machine else "")
        + ("jobs:\n- JobHostUnits\n" if machine else "")
        + f"upgradedToVersion: {spec.juju_version}\n"
        f"cacert: |\n{_indent(cluster.ca_cert)}"
        f"controller: controller-{cluster.controller_uuid}\n"
        f"model: model-{cluster.workload_model(host)}\n"
        f"apiaddresses:\n{api}"
        f"apipassword: {cluster.agent_passwords[tag]}\n"
        f"oldpassword: {secrets.token_hex(16)}\n"
        "loggingconfig: <root>=DEBUG\n"
        "values:\n"
        f"  AGENT_SERVICE_NAME: jujud-{tag}\n"
        '  CONTAINER_TYPE: ""\n'
        "  PROVIDER_TYPE: lxd\n"
    )


def mongod_config(spec: Profile) -> str:
    """Return /var/snap/juju-db/common/juju-db.config as Juju writes it (legacy key = value): the --ssl*
    names for the 4.0 snap (no --tls* before 4.2), --tls* for 4.4; with 4.4.30 also the CA that client
    certificates must chain to (mutual TLS, juju/juju#22455; the key name as MongoDB 4.4 spells it)."""
    if spec.generation.tls_aliases:
        tls = (
            f"tlsCertificateKeyFile = {spec.mongo_pem}\n"
            "tlsCertificateKeyFilePassword = ignored\n"
            "tlsMode = requireTLS\n"
        )
    else:
        tls = f"sslPEMKeyFile = {spec.mongo_pem}\nsslPEMKeyPassword = ignored\nsslMode = requireSSL\n"
    if spec.generation.client_cert_required:
        tls += f"tlsCAFile = {SNAP_COMMON}/ca.crt\n"
    return (
        "# WARNING\n# autogenerated by juju on 2026-11-26 00:00:00 +0000 UTC\n"
        f"dbpath = {spec.dbpath}\n"
        "logpath = /var/snap/juju-db/common/logs/mongodb.log\n"
        f"{tls}"
        "port = 37017\n"
        "bind_ip_all = true\n"
        "ipv6 = true\n"
        "quiet = true\n"
        "oplogSize = 1024\n"
        "replSet = juju\n"
        "auth = true\n"
        f"keyFile = {spec.shared_secret}\n"
        "storageEngine = wiredTiger\n"
        "wiredTigerCacheSizeGB = 0.25\n"
        "journal = true\n"
        "slowms = 1000\n"
    )


def db_unit(spec: Profile) -> str:
    """Return the juju-db systemd unit text of the profile."""
    if spec.snap:
        return (
            "[Unit]\n# Auto-generated, DO NOT EDIT\n"
            "Description=Service for snap application juju-db.daemon\n"
            "Wants=network.target\nAfter=network.target\nX-Snappy=yes\n\n"
            "[Service]\nEnvironmentFile=-/etc/environment\n"
            "ExecStart=/usr/bin/snap run juju-db.daemon\n"
            "SyslogIdentifier=juju-db.daemon\nRestart=on-failure\n"
            f"WorkingDirectory=/var/snap/juju-db/{SNAP_REVISION}\n"
            "TimeoutStopSec=30\nType=simple\nLimitNOFILE=64000\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
    return (
        "[Unit]\nDescription=juju state database\n"
        "After=network-online.target\nWants=network-online.target\n\n"
        "[Service]\nLimitNOFILE=64000\nLimitNPROC=20000\nTimeoutSec=300\n"
        f"ExecStart={spec.tools['mongod']} --dbpath {spec.dbpath} --sslMode requireSSL "
        f"--sslPEMKeyFile {spec.mongo_pem} --sslPEMKeyPassword=ignored --port 37017 "
        "--syslog --journal "
        + ("--bind_ip_all " if spec.generation.bind_ip_all else "")  # 3.6+ binds localhost by default
        + f"--replSet juju --quiet --oplogSize 1024 --auth --keyFile {spec.shared_secret} "
        "--storageEngine wiredTiger --wiredTigerCacheSizeGB 0.25\n"
        "Restart=always\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def jujud_unit(mid: str) -> str:
    """Return jujud-machine-N.service as Juju 2.7.2+ writes it."""
    return (
        f"[Unit]\nDescription=juju agent for machine-{mid}\nAfter=syslog.target\nAfter=network.target\n"
        "After=systemd-user-sessions.service\n\n"
        "[Service]\nLimitNOFILE=64000\n"
        f"ExecStart=/etc/systemd/system/jujud-machine-{mid}-exec-start.sh\n"
        "Restart=on-failure\nTimeoutSec=300\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def jujud_exec_start(mid: str, log_owner: str) -> str:
    """Return jujud-machine-N-exec-start.sh as Juju writes it."""
    log = f"/var/log/juju/machine-{mid}.log"
    return (
        "#!/usr/bin/env bash\n\n# Set up logging.\n"
        f"touch '{log}'\nchown {log_owner} '{log}'\nchmod 0640 '{log}'\n"
        f"exec >> '{log}'\nexec 2>&1\n\n# Run the script.\n"
        f"'/var/lib/juju/tools/machine-{mid}/jujud' machine --data-dir '/var/lib/juju' "
        f"--machine-id {mid} --debug\n"
    )


def _enable(root: Path, unit: str) -> None:
    _symlink(root, f"/etc/systemd/system/multi-user.target.wants/{unit}", f"/etc/systemd/system/{unit}")


# --------------------------------------------------------------------------- the database seed


def _addr(ip: str, scope: str = "local-cloud", origin: str | None = "provider", space: bool = True) -> dict:
    d: dict[str, Any] = {"value": ip, "addresstype": "ipv6" if ":" in ip else "ipv4", "networkscope": scope}
    if origin:
        d["origin"] = origin
    if space:
        d["spaceid"] = "0"
    return d


def _machine_doc(
    model_uuid: str,
    mid: str,
    ip: str,
    series: str,
    version: str,
    password: str | None,
    nonce: str,
    controller: bool,
    base: bool = False,
) -> dict:
    txn = f"{bson.ObjectId()}_{secrets.token_hex(4)}"
    doc: dict[str, Any] = {
        "_id": f"{model_uuid}:{mid}",
        "machineid": mid,
        "model-uuid": model_uuid,
        "nonce": nonce,
        "series": series,
        "containertype": "",
        "principals": [] if controller else [f"ubuntu/{mid}"],
        "life": 0,
        "jobs": [2, 1] if controller else [1],
        "passwordhash": agent_password_hash(password) if password else agent_password_hash(_password()),
        "clean": not controller,
        "addresses": [_addr(ip)],
        "machineaddresses": [
            _addr(ip, origin="machine", space=False),
            _addr("127.0.0.1", "local-machine", "machine", False),
            _addr("::1", "local-machine", "machine", False),
        ],
        "preferredpublicaddress": _addr(ip),
        "preferredprivateaddress": _addr(ip),
        "supportedcontainersknown": True,
        "supportedcontainers": ["lxd"],
        # 2.7+: no hasvote/wantsvote here; an upgrade step $unset them and the votes live in
        # controllerNodes (juju/juju state/upgrades.go 2.7 steps; state/enableha.go controllerNodeDoc).
        "tools": {"version": f"{version}-{series}-amd64", "url": "", "size": bson.Int64(0), "sha256": ""},
        "agent-started-at": datetime.datetime.utcnow().replace(microsecond=0),
        "txn-revno": bson.Int64(7),
        "txn-queue": [txn],
    }
    if base:
        # Juju 3.x: a machine has a base, not a series (J36 state/machine.go machineDoc `Base`), and its
        # tools are <version>-ubuntu-<arch>
        del doc["series"]
        doc["base"] = {"os": "ubuntu", "channel": f"{SERIES_VERSION[series]}/stable"}
        doc["tools"]["version"] = f"{version}-ubuntu-amd64"
    return doc


SERIES_VERSION = {"xenial": "16.04", "bionic": "18.04", "focal": "20.04", "jammy": "22.04", "noble": "24.04"}


def seed_documents(cluster: Cluster) -> dict[str, dict[str, list[dict]]]:
    """Return the controller's databases as documents (juju, admin, local, blobstore), logs excluded."""
    spec = cluster.spec
    cm, dm, cu = cluster.model_uuid, cluster.default_model_uuid, cluster.controller_uuid
    version = spec.juju_version
    now = datetime.datetime.utcnow().replace(microsecond=0)
    ctrls = cluster.controllers
    juju: dict[str, list[dict]] = {}

    def model(uuid_: str, name: str) -> dict:
        return {
            "_id": uuid_,
            "name": name,
            "type": "iaas",
            "life": 0,
            "owner": "admin",
            "controller-uuid": cu,
            "migration-mode": "",
            "environ-version": 0,
            "cloud": "localhost",
            "cloud-region": "localhost",
            "cloud-credential": "localhost/admin/localhost",
            "sla": {"level": "", "credentials": b""},
            "meter-status": {"code": "", "info": ""},
            "txn-revno": bson.Int64(2),
            "txn-queue": [],
        }

    juju["models"] = [model(cm, "controller"), model(dm, "default")][: 2 if cluster.hosted_models else 1]
    machines = [
        _machine_doc(
            cm,
            str(c.machine_id),
            c.ip,
            spec.series,
            version,
            cluster.passwords[str(c.machine_id)],
            cluster.nonces[str(c.machine_id)],
            True,
            spec.base,
        )
        for c in ctrls
    ]
    # The workload machines (lab hosts m0, m1, …), alternately in the controller model and in the
    # hosted model "default": their agents log in to the API stand-in with these password hashes.
    machines += [
        _machine_doc(
            cluster.workload_model(w),
            str(w.machine_id),
            w.ip,
            spec.series,
            version,
            cluster.agent_passwords[f"machine-{w.machine_id}"],
            cluster.nonces[str(w.machine_id)],
            False,
            spec.base,
        )
        for w in cluster.workloads
    ]
    juju["machines"] = machines
    # state/unit.go unitDoc (the fields the API stand-in reads: name, machineid, life, passwordhash)
    juju["units"] = [
        {
            "_id": f"{cluster.workload_model(w)}:ubuntu/{w.machine_id}",
            "name": f"ubuntu/{w.machine_id}",
            "model-uuid": cluster.workload_model(w),
            "application": "ubuntu",
            "series": spec.series,
            "principal": "",
            "machineid": str(w.machine_id),
            "life": 0,
            "passwordhash": agent_password_hash(cluster.agent_passwords[f"unit-ubuntu-{w.machine_id}"]),
            "txn-revno": bson.Int64(3),
        }
        for w in cluster.workloads
    ]
    # state/application.go applicationDoc: one `ubuntu` application in each model with a workload unit
    # (what python-libjuju lists through the API stand-in's AllWatcher)
    app_models = sorted({cluster.workload_model(w) for w in cluster.workloads})
    juju["applications"] = [
        {
            "_id": f"{m}:ubuntu",
            "name": "ubuntu",
            "model-uuid": m,
            "series": spec.series,
            "subordinate": False,
            "charmurl": "ch:amd64/ubuntu-24" if spec.base else "cs:ubuntu-18",
            "life": 0,
            "unitcount": sum(1 for w in cluster.workloads if cluster.workload_model(w) == m),
            "relationcount": 0,
            "minunits": 0,
            "exposed": False,
            "txn-revno": bson.Int64(2),
        }
        for m in app_models
    ]
    juju["instanceData"] = [
        {
            "_id": m["_id"],
            "machineid": m["machineid"],
            "model-uuid": m["model-uuid"],
            "instanceid": f"juju-{m['model-uuid'][-6:]}-{m['machineid']}",
            "arch": "amd64",
            "mem": bson.Int64(3584),
            "rootdisk": bson.Int64(20480),
            "cpucores": bson.Int64(2),
            "txn-revno": bson.Int64(1),
        }
        for m in machines
    ]
    hostports = [
        [
            {**_addr(c.ip), "port": 17070},
            {**_addr("127.0.0.1", "local-machine", None), "port": 17070},
            {**_addr("::1", "local-machine", None), "port": 17070},
        ]
        for c in ctrls
    ]
    juju["controllers"] = [
        {
            "_id": "e",
            "cloud": "localhost",
            "model-uuid": cm,
            "controller-ids": [str(c.machine_id) for c in ctrls],
            "txn-revno": bson.Int64(len(ctrls)),
        },
        {"_id": "apiHostPorts", "apihostports": hostports, "txn-revno": bson.Int64(3)},
        {"_id": "apiHostPortsForAgents", "apihostports": hostports, "txn-revno": bson.Int64(3)},
        {
            "_id": "stateServingInfo",
            "apiport": 17070,
            "stateport": 37017,
            "cert": cluster.controller_cert,
            "privatekey": cluster.controller_key,
            "caprivatekey": cluster.ca_key,
            "sharedsecret": cluster.shared_secret,
            "systemidentity": cluster.system_identity,
        },
        {
            "_id": "controllerSettings",
            "settings": {
                "controller-uuid": cu,
                "api-port": 17070,
                "state-port": 37017,
                "ca-cert": cluster.ca_cert,
                "audit-log-enabled": True,
                "max-logs-size": "4096M",
                "max-logs-age": "72h",
                "controller-name": "lab",
            },
            "txn-revno": bson.Int64(1),
        },
    ]
    # juju/juju state/enableha.go controllerNodeDoc: `agent-version` is a *tools.Tools (version as
    # version.Binary's string form, url, size, sha256), not a plain version string.
    juju["controllerNodes"] = [
        {
            "_id": str(c.machine_id),
            "has-vote": True,
            "wants-vote": True,
            "password-hash": agent_password_hash(cluster.passwords[str(c.machine_id)]),
            "agent-version": {
                "version": f"{version}-{spec.tools_os}-amd64",
                "url": "",
                "size": bson.Int64(0),
                "sha256": "",
            },
            "txn-revno": bson.Int64(4),
        }
        for c in ctrls
    ]
    # What the machiner / hostkeyreporter report and cross-model relations record (self-healing
    # on a restored controller; seeded so a restore carries real-shaped documents through):
    # juju/juju state/ipaddresses.go ipAddressDoc, state/linklayerdevices.go linkLayerDeviceDoc,
    # state/sshhostkeys.go sshHostKeysDoc, state/externalcontroller.go externalControllerDoc.
    juju["linklayerdevices"] = [
        {
            "_id": f"{m['model-uuid']}:m#{m['machineid']}#d#eth0",
            "model-uuid": m["model-uuid"],
            "machine-id": m["machineid"],
            "name": "eth0",
            "mtu": 1500,
            "type": "ethernet",
            "mac-address": f"00:16:3e:00:00:{k:02x}",
            "is-auto-start": True,
            "is-up": True,
            "parent-name": "",
            "txn-revno": bson.Int64(1),
        }
        for k, m in enumerate(machines)
    ]
    juju["ip.addresses"] = [
        {
            "_id": f"{m['model-uuid']}:m#{m['machineid']}#d#eth0#ip#{m['addresses'][0]['value']}",
            "model-uuid": m["model-uuid"],
            "device-name": "eth0",
            "machine-id": m["machineid"],
            "subnet-cidr": "10.201.0.0/24",
            "config-method": "static",
            "value": m["addresses"][0]["value"],
            "dns-servers": [],
            "dns-search-domains": [],
            "gateway-address": "",
            "is-default-gateway": False,
            "origin": "machine",
            "txn-revno": bson.Int64(1),
        }
        for m in machines
    ]
    juju["sshhostkeys"] = [
        {
            "_id": f"{m['model-uuid']}:m#{m['machineid']}",
            "keys": [
                f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{m['machineid']:0>43} root@machine-{m['machineid']}"
            ],
            "txn-revno": bson.Int64(1),
        }
        for m in machines
    ]
    juju["externalControllers"] = [] if not cluster.hosted_models else [
        {
            "_id": "d9f3b3f6-0000-4000-8000-0000000ecafe",
            "alias": "offers",
            "addrs": ["10.201.0.250:17070"],
            "cacert": cluster.ca_cert,
            "models": [str(uuid.UUID(int=0xFEED))],
            "txn-revno": bson.Int64(1),
        }
    ]

    def settings(uuid_: str, name: str, harvest: str) -> dict:
        return {
            "_id": f"{uuid_}:e",
            "model-uuid": uuid_,
            "settings": {
                "name": name,
                "uuid": uuid_,
                "type": "lxd",
                "agent-version": version,
                "default-series": spec.series,
                # juju/juju environs/config/config.go ProvisionerHarvestModeKey (default
                # "destroyed"); 2.x/3.x have no `provisioner-safe-mode`.
                "provisioner-harvest-mode": harvest,
                "logging-config": "<root>=INFO",
                "development": False,
                "authorized-keys": cluster.system_identity_pub + "\n" + cluster.client_pub,
            },
            "version": bson.Int64(1),
            "txn-revno": bson.Int64(2),
        }

    juju["settings"] = [settings(cm, "controller", "destroyed"), settings(dm, "default", "all")][
        : 2 if cluster.hosted_models else 1
    ]
    juju["clouds"] = [
        {
            "_id": "localhost",
            "name": "localhost",
            "type": "lxd",
            "auth-types": ["certificate"],
            "endpoint": "",
            "regions": {"localhost": {"endpoint": ""}},
            "txn-revno": bson.Int64(2),
        }
    ]
    juju["users"] = [
        {
            "_id": "admin",
            "name": "admin",
            "displayname": "admin",
            # state/user.go PasswordValid: utils.UserPasswordHash(password, passwordsalt)
            "passwordhash": user_password_hash(cluster.admin_password, cluster.admin_salt),
            "passwordsalt": cluster.admin_salt,
            "createdby": "admin",
            "datecreated": now,
            "txn-revno": bson.Int64(1),
        }
    ]
    txns = []
    for m in machines:
        txns.append(
            {
                "_id": bson.ObjectId(),
                "s": 6,
                "o": [
                    {
                        "c": "machines",
                        "d": m["_id"],
                        "a": {"life": {"$ne": 2}},
                        "u": {"$set": {"clean": m["clean"]}},
                    }
                ],
            }
        )
    for node in juju["controllerNodes"]:
        txns.append(
            {
                "_id": bson.ObjectId(),
                "s": 6,
                "o": [{"c": "controllerNodes", "d": node["_id"], "a": {"$exists": True},
                       "u": {"$set": {"has-vote": True}}}],
            }
        )
    juju["txns"] = txns
    juju["statuseshistory"] = [
        {
            "_id": bson.ObjectId(),
            "model-uuid": m["model-uuid"],
            "globalkey": f"m#{m['machineid']}",
            "status": status,
            "statusinfo": "",
            "statusdata": {},
            "updated": bson.Int64(int(now.timestamp() * 1e9) + k),
        }
        for k, m in enumerate(machines)
        for status in ("pending", "started")
    ]
    juju["statuses"] = [
        {
            "_id": f"{m['model-uuid']}:m#{m['machineid']}",
            "model-uuid": m["model-uuid"],
            "status": "started",
            "statusinfo": "",
            "statusdata": {},
            "updated": bson.Int64(int(now.timestamp() * 1e9)),
            "txn-revno": bson.Int64(3),
        }
        for m in machines
    ]
    # the users a Juju controller's juju-db holds: `admin`, made at bootstrap with the bootstrap
    # machine's oldpassword (juju/juju agent/agentbootstrap bootstrap.go initMongo:
    # mongo.SetAdminMongoPassword(session, mongo.AdminUser, info.Password)), and machine-N for each
    # controller machine (state SetMongoPassword), all with Juju's four roles (mongo/admin.go)
    first_ctrl = str(ctrls[0].machine_id) if ctrls else None
    bootstrap_admin = []
    if first_ctrl is not None and first_ctrl in cluster.old_passwords:
        bootstrap_admin.append(common.user_document(
            "admin", cluster.old_passwords[first_ctrl], common.JUJU_ROLES, spec.family == "4.4"
        ))
    admin = {
        "system.users": bootstrap_admin + [
            common.user_document(
                f"machine-{c.machine_id}",
                cluster.passwords[str(c.machine_id)],
                common.JUJU_ROLES,
                spec.family == "4.4",
            )
            for c in ctrls
        ],
        "system.version": [{"_id": "authSchema", "currentVersion": 5}],
    }
    members = [
        {
            "_id": int(str(c.machine_id)) + 1,
            "host": f"{c.ip}:37017",
            "arbiterOnly": False,
            "buildIndexes": True,
            "hidden": False,
            "priority": 1.0,
            "tags": {"juju-machine-id": str(c.machine_id)},
            "slaveDelay": bson.Int64(0),
            "votes": 1,
        }
        for c in ctrls
    ]
    local = {
        "system.replset": [
            {
                "_id": "juju",
                "version": len(ctrls),
                "protocolVersion": bson.Int64(1),
                "members": members,
                "settings": {
                    "chainingAllowed": True,
                    "heartbeatTimeoutSecs": 10,
                    "electionTimeoutMillis": 10000,
                },
            }
        ],
        "oplog.rs": [
            {
                "ts": bson.Timestamp(int(now.timestamp()), 1),
                "t": bson.Int64(1),
                "h": bson.Int64(0),
                "v": 2,
                "op": "n",
                "ns": "",
                "wall": now,
                "o": {"msg": "initiating set"},
            }
        ],
    }
    blob = os.urandom(2048)
    file_id = bson.ObjectId()
    blobstore = {
        "blobstore.files": [
            {
                "_id": file_id,
                "filename": f"tools/{version}-{spec.tools_os}-amd64",
                "length": bson.Int64(len(blob)),
                "chunkSize": 261120,
                "uploadDate": now,
                "md5": "",
            }
        ],
        "blobstore.chunks": [{"_id": bson.ObjectId(), "files_id": file_id, "n": 0, "data": blob}],
    }
    return {"juju": juju, "admin": admin, "local": local, "blobstore": blobstore}


LOG_MESSAGES = [
    (
        "juju.worker.dependency",
        "engine.go:671",
        '"api-caller" manifold worker started at 2026-11-26 07:00:00',
    ),
    (
        "juju.apiserver",
        "apiserver.go:1043",
        "[A1] machine-0 API connection from 10.201.0.11:54122; facades: " + "Agent Uniter " * 60,
    ),
    ("juju.worker.peergrouper", "worker.go:561", 'found new machine "0"'),
    ("juju.state.txn", "txn.go:251", "ran transaction in 0.012s: " + "txn-op " * 150),
    ("juju.worker.uniter", "uniter.go:345", 'unit "ubuntu/0" hook output: ' + "config-changed ok; " * 100),
]


def write_logs(
    store: storage.Storage, model_uuids: list[str], version: str, total: int, rnd: bytes, base: int
) -> None:
    """Fill the `logs` database with about `total` bytes of log documents, writing BSON directly (fast).

    The documents depend only on the arguments (rnd: 5 bytes of every ObjectId, base: epoch seconds),
    so HA members generate identical data."""
    for mu in model_uuids:
        store.create("logs", f"logs.{mu}")
    if total <= 0:
        return
    templates = []
    for module, loc, text in LOG_MESSAGES:
        doc = {
            "_id": bson.ObjectId(b"\0" * 12),
            "t": bson.Int64(0),
            "n": "machine-0",
            "r": version,
            "m": module,
            "l": loc,
            "v": 3,
            "x": text,
        }
        raw = common.encode(doc)
        # _id value starts after: int32 len + type byte + "_id\0"
        id_off, t_off = 4 + 1 + 4, raw.index(b"\x12t\x00") + 3
        templates.append((raw[:id_off], raw[id_off + 12 : t_off], raw[t_off + 8 :]))
    pack_i, pack_q = struct.Struct(">I").pack, struct.Struct("<q").pack
    per_model = total // len(model_uuids)
    counter = 0
    for mu in model_uuids:
        written = 0
        with open(store.file("logs", f"logs.{mu}"), "ab") as f:
            buf = bytearray()
            start = len(buf)
            while written + len(buf) - start < per_model:
                prefix, mid, suffix = templates[counter % 5]
                buf += prefix
                buf += pack_i(base + counter // 1000)
                buf += rnd
                buf += (counter & 0xFFFFFF).to_bytes(3, "big")
                buf += mid
                buf += pack_q(base * 1_000_000_000 + counter * 1_000_000)
                buf += suffix
                counter += 1
                if len(buf) >= 8 << 20:
                    f.write(buf)
                    written += len(buf) - start
                    buf, start = bytearray(), 0
            f.write(buf)
            buf = bytearray()


def build_seed(cluster: Cluster, dest: Path, with_logs: bool = True) -> None:
    """Write the seeded data directory (stand-in storage format) of the cluster's controllers into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    store = storage.Storage(str(dest))
    for db, colls in seed_documents(cluster).items():
        for coll, docs in colls.items():
            store.write(db, coll, docs)
    if with_logs:
        _fill_logs(cluster, dest)
    with open(dest / "storage.bson", "wb") as f:
        f.write(common.encode({"storage": {"engine": "wiredTiger"}, "version": cluster.spec.mongo_version}))


def _fill_logs(cluster: Cluster, dbpath: Path) -> None:
    models = [cluster.model_uuid, cluster.default_model_uuid][: 2 if cluster.hosted_models else 1]
    store = storage.Storage(str(dbpath))
    write_logs(store, models, cluster.spec.juju_version, cluster.db_size, cluster.log_rnd, cluster.log_base)


def _seed_dir(cluster: Cluster) -> Path:
    if cluster.seed_dir is None or not Path(cluster.seed_dir).exists():
        tmp = tempfile.mkdtemp(prefix="jujubackup-lab-seed-")
        build_seed(cluster, Path(tmp) / "db", with_logs=False)
        cluster.seed_dir = str(Path(tmp) / "db")
        weakref.finalize(cluster, shutil.rmtree, tmp, True)
    return Path(cluster.seed_dir)


# --------------------------------------------------------------------------- provisioning


def provision_host(root: Path, host: HostSpec, cluster: Cluster) -> None:
    """Given a host's root dir, write the controller or spare layout of the cluster's profile.

    Raise ValueError if the host's profile differs from the cluster's or a controller is unknown."""
    if host.profile != cluster.profile:
        raise ValueError(f"host {host.name} has profile {host.profile}, the lab {cluster.profile}")
    root = Path(root)
    oldbash.install(root, cluster.profile)  # xenial's bash 4.3, not the rootfs's 5.2
    release_gates.install(root, cluster.profile)  # xenial's setsid and systemd-run options, bionic's setsid
    if host.role == "workload":
        _provision_workload(root, host, cluster)
        return
    install_mongo_tools(root, cluster.profile)
    if host.role == "spare":
        return
    if host.machine_id is None or host.machine_id not in cluster.passwords:
        raise ValueError(f"controller {host.name} (machine {host.machine_id}) is not part of the cluster")
    _provision_controller(root, host, cluster)


def _provision_controller(root: Path, host: HostSpec, cluster: Cluster) -> None:
    spec, mid = cluster.spec, str(host.machine_id)
    tools_ver = f"{spec.juju_version}-{spec.tools_os}-amd64"
    server_pem = cluster.controller_cert + cluster.controller_key
    _mkdir(root, "/var/lib/juju", 0o755)
    _mkdir(root, "/var/lib/juju/agents", 0o755)
    _mkdir(root, f"/var/lib/juju/agents/machine-{mid}", 0o755)
    _write(root, f"/var/lib/juju/agents/machine-{mid}/agent.conf", agent_conf(cluster, host), 0o600)
    _write(root, "/var/lib/juju/server.pem", server_pem, 0o600)
    _write(root, "/var/lib/juju/system-identity", cluster.system_identity, 0o600)
    _write(root, "/var/lib/juju/nonce.txt", cluster.nonces[mid] + "\n", 0o644)
    _mkdir(root, "/var/lib/juju/tools", 0o755)
    _mkdir(root, f"/var/lib/juju/tools/{tools_ver}", 0o755)
    _write(root, f"/var/lib/juju/tools/{tools_ver}/jujud", jujud_script(tools_ver), 0o755)
    _write(
        root,
        f"/var/lib/juju/tools/{tools_ver}/downloaded-tools.txt",
        json.dumps(
            {
                "version": tools_ver,
                "url": f"https://{host.ip}:17070/tools/{tools_ver}",
                "sha256": secrets.token_hex(32),
                "size": 54705542,
            }
        ),
        0o644,
    )
    _write(root, f"/var/lib/juju/tools/{tools_ver}/FORCE-VERSION", spec.juju_version, 0o644)
    _symlink(root, f"/var/lib/juju/tools/machine-{mid}", f"/var/lib/juju/tools/{tools_ver}")
    _mkdir(root, "/var/lib/juju/metricspool", 0o755)
    _mkdir(root, "/var/lib/juju/raft", 0o700)
    if spec.base:  # Juju 3.x: the dqlite node agentbootstrap made (HA members: the joined cluster)
        write_dqlite_node(root, host, cluster)
    # shared secret + mongo PEM where juju-db reads them
    _write(root, spec.shared_secret, cluster.shared_secret, 0o600)
    if spec.snap:
        _write(root, "/var/snap/juju-db/common/server.pem", server_pem, 0o600)
        _write(root, "/var/snap/juju-db/common/ca.crt", cluster.ca_cert, 0o644)
        _write(root, "/var/snap/juju-db/common/juju-db.config", mongod_config(spec), 0o644)
        # Juju's EnsureServer at bootstrap: `snap set juju-db configpath=<SNAP_COMMON>/juju-db.config`
        snap_configpath(root, "/var/snap/juju-db/common/juju-db.config")
        _mkdir(root, "/var/snap/juju-db/common/logs", 0o755)
    # ssh keys Juju puts on every machine (LAB-INFRA appends the lab's own key afterwards)
    ubuntu = _ids(root, "ubuntu")
    _mkdir(root, "/home/ubuntu/.ssh", 0o700, ubuntu)
    _write(
        root,
        "/home/ubuntu/.ssh/authorized_keys",
        f"{cluster.client_pub}\n{cluster.system_identity_pub}\n",
        0o600,
        ubuntu,
    )
    # logs
    syslog_exists = _ids(root, "syslog") != (0, 0)
    log_owner = "syslog:adm" if syslog_exists else "root:adm"
    _mkdir(root, "/var/log/juju", 0o775, _ids(root, "syslog" if syslog_exists else "root", "adm"))
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    _write(
        root,
        f"/var/log/juju/machine-{mid}.log",
        f"{ts} INFO juju.cmd supercommand.go:56 running jujud [{spec.juju_version} 0 gc go1.14.15]\n"
        f'{ts} INFO juju.agent.setup agentconf.go:128 setting logging config to "<root>=WARNING"\n',
        0o640,
        _ids(root, "syslog" if syslog_exists else "root", "adm"),
    )
    # database
    dbpath = root / spec.dbpath.lstrip("/")
    if dbpath.exists():
        shutil.rmtree(dbpath)
    shutil.copytree(_seed_dir(cluster), dbpath)
    _fill_logs(cluster, dbpath)  # generated in place (identical on every member): faster than copying
    dbpath.chmod(0o700)
    # units
    _write(root, f"/etc/systemd/system/{spec.db_service}.service", db_unit(spec), 0o644)
    _write(root, f"/etc/systemd/system/jujud-machine-{mid}.service", jujud_unit(mid), 0o644)
    _write(
        root,
        f"/etc/systemd/system/jujud-machine-{mid}-exec-start.sh",
        jujud_exec_start(mid, log_owner),
        0o755,
    )
    _enable(root, f"{spec.db_service}.service")
    _enable(root, f"jujud-machine-{mid}.service")


DQLITE_BOOTSTRAP_ID = 0x2DC171858C3155BE
"""go-dqlite's BootstrapID: the node id of a cluster's first node (client/constants.go)."""


def write_dqlite_node(root: Path, host: HostSpec, cluster: Cluster) -> None:
    """Write /var/lib/juju/dqlite (0700) as a 3.x controller has it once its dqlite node ran:
    info.yaml (this node) and cluster.yaml (every node), go-dqlite's YAML NodeInfo (ID, Address,
    Role 0 = voter). A single controller's node is the one agentbootstrap made, bound to the loopback
    address (juju/juju database/node.go dqliteBootstrapBindIP 127.0.0.1, port 17666); HA members are
    bound to their own addresses (worker/dbaccessor rebindAddress / joinNodeToCluster)."""
    ctrls = cluster.controllers

    def node(c: HostSpec) -> dict[str, Any]:
        first = c.machine_id == ctrls[0].machine_id
        # the same ids on every member: derived from the controller uuid and the machine id
        ident = DQLITE_BOOTSTRAP_ID if first else (uuid.UUID(cluster.controller_uuid).int >> 72) + int(
            str(c.machine_id))
        addr = "127.0.0.1" if len(ctrls) == 1 else c.ip
        return {"ID": ident, "Address": f"{addr}:17666", "Role": 0}

    nodes = {str(c.machine_id): node(c) for c in ctrls}
    me = nodes[str(host.machine_id)]

    def yaml_node(n: dict[str, Any], lead: str) -> str:
        return f"{lead}ID: {n['ID']}\n  Address: {n['Address']}\n  Role: {n['Role']}\n"

    _mkdir(root, "/var/lib/juju/dqlite", 0o700)
    _write(root, "/var/lib/juju/dqlite/info.yaml",
           f"ID: {me['ID']}\nAddress: {me['Address']}\nRole: 0\n", 0o600)
    _write(root, "/var/lib/juju/dqlite/cluster.yaml", "".join(yaml_node(n, "- ") for n in nodes.values()),
           0o600)


def unit_exec_start(unit_tag: str, unit_name: str, log_owner: str) -> str:
    """Return jujud-unit-X-N-exec-start.sh as Juju 2.8 writes it for a unit agent service."""
    log = f"/var/log/juju/{unit_tag}.log"
    return (
        "#!/usr/bin/env bash\n\n# Set up logging.\n"
        f"touch '{log}'\nchown {log_owner} '{log}'\nchmod 0640 '{log}'\n"
        f"exec >> '{log}'\nexec 2>&1\n\n# Run the script.\n"
        f"'/var/lib/juju/tools/{unit_tag}/jujud' unit --data-dir '/var/lib/juju' "
        f"--unit-name {unit_name} --debug\n"
    )


def unit_unit(unit_tag: str) -> str:
    """Return jujud-unit-X-N.service as Juju 2.8 writes it (one systemd service per unit agent)."""
    return (
        f"[Unit]\nDescription=juju unit agent for {unit_tag}\nAfter=syslog.target\nAfter=network.target\n"
        "After=systemd-user-sessions.service\n\n"
        "[Service]\nLimitNOFILE=64000\n"
        f"ExecStart=/etc/systemd/system/jujud-{unit_tag}-exec-start.sh\n"
        "Restart=on-failure\nTimeoutSec=300\n\n[Install]\nWantedBy=multi-user.target\n"
    )


def _provision_workload(root: Path, host: HostSpec, cluster: Cluster) -> None:
    """Write a workload machine: machine-K and unit-ubuntu-K agent dirs (agent.conf 0600), the
    tools, jujud-machine-K.service; before 2.9 (every 2.8 profile) also jujud-unit-ubuntu-K.service
    (2.9 runs unit agents inside the machine agent: the deployer's "nested" context since 2.9.0)."""
    spec, mid = cluster.spec, str(host.machine_id)
    tools_ver = f"{spec.juju_version}-{spec.tools_os}-amd64"
    install_library(root)
    _mkdir(root, "/var/lib/juju", 0o755)
    _mkdir(root, "/var/lib/juju/agents", 0o755)
    tags = (f"machine-{mid}", f"unit-ubuntu-{mid}")
    for tag in tags:
        _mkdir(root, f"/var/lib/juju/agents/{tag}", 0o755)
        _write(root, f"/var/lib/juju/agents/{tag}/agent.conf", workload_agent_conf(cluster, host, tag), 0o600)
        _symlink(root, f"/var/lib/juju/tools/{tag}", f"/var/lib/juju/tools/{tools_ver}")
    _write(root, f"/var/lib/juju/tools/{tools_ver}/jujud", jujud_script(tools_ver), 0o755)
    _write(root, "/var/lib/juju/nonce.txt", cluster.nonces[mid] + "\n", 0o644)
    ubuntu = _ids(root, "ubuntu")
    _mkdir(root, "/home/ubuntu/.ssh", 0o700, ubuntu)
    _write(
        root,
        "/home/ubuntu/.ssh/authorized_keys",
        f"{cluster.client_pub}\n{cluster.system_identity_pub}\n",
        0o600,
        ubuntu,
    )
    syslog_exists = _ids(root, "syslog") != (0, 0)
    log_owner = "syslog:adm" if syslog_exists else "root:adm"
    _mkdir(root, "/var/log/juju", 0o775, _ids(root, "syslog" if syslog_exists else "root", "adm"))
    _write(root, f"/etc/systemd/system/jujud-machine-{mid}.service", jujud_unit(mid), 0o644)
    _write(root, f"/etc/systemd/system/jujud-machine-{mid}-exec-start.sh", jujud_exec_start(mid, log_owner),
           0o755)
    _enable(root, f"jujud-machine-{mid}.service")
    if not spec.nested_units:
        unit = tags[1]
        _write(root, f"/etc/systemd/system/jujud-{unit}.service", unit_unit(unit), 0o644)
        _write(root, f"/etc/systemd/system/jujud-{unit}-exec-start.sh",
               unit_exec_start(unit, f"ubuntu/{mid}", log_owner), 0o755)
        _enable(root, f"jujud-{unit}.service")


# --------------------------------------------------------------------------- reading a host's data


def read_db(root: Path, profile: str, dbs: Iterable[str] | None = None) -> dict[str, dict[str, list[dict]]]:
    """Given a host's root dir and profile, return {db: {collection: [documents]}} from juju-db's dbpath.

    `dbs` limits the databases read (default: all, including the possibly big `logs`)."""
    store = storage.Storage(str(Path(root) / PROFILES[profile].dbpath.lstrip("/")))
    wanted = set(dbs) if dbs is not None else None
    out: dict[str, dict[str, list[dict]]] = {}
    if not os.path.isdir(store.dbpath):
        return out
    for db in store.databases():
        if wanted is not None and db not in wanted:
            continue
        out[db] = {coll: store.read(db, coll) for coll in store.collections(db)}
    return out
