"""PURE: parse the probe script's JSON into ControllerFacts. No I/O.

The probe (remote_scripts/probe.sh.j2) prints one JSON document:

    {"hostname", "paths": [existing probe paths], "agent_conf": {path, format, tag, controller, model,
     upgradedToVersion, stateport, apiport, mongoversion, apiaddresses: [...]}, "tools_link",
     "os_release": {ID, VERSION_ID, VERSION_CODENAME}, "services": [{name, LoadState, ActiveState,
     SubState, MainPID}], "versions": {mongod, mongodump, shell},
     "mongo": {"rc", "lines": [...]},
     "backup_dir", "backup_dir_exists", "free_bytes", "pigz", "flock", "profile_guess",
     "restore_journal": {"exists", "dir", "done": [step names]}, "lock": {"held", "holder" (JSON text)}}

`mongo.lines` are the shell's JSON outputs in the order of the probe's statements (MONGO_STATEMENTS).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from jujubackup.errors import RefusedError
from jujubackup.metadata import is_machine_tag_suffix
from jujubackup.profiles import CA_FILE, MongoTls, Profile, detect
from jujubackup.remote_values import MAX_INT64, HostileOutputError, remote_int

UNKNOWN = "<unknown>"

ESTIMATE_DBS: tuple[str, ...] = ("juju", "logs", "blobstore", "presence", "osimages")
"""Databases whose dbStats the probe asks for (non-existent ones report zero)."""

MONGO_STATEMENTS: tuple[str, ...] = (
    "ping",
    "replSetGetStatus",
    "replSetGetConfig",
    "listDatabases",
    *(f"dbStats:{db}" for db in ESTIMATE_DBS),
    "instanceData",
    "models",
)
"""What each line of the probe's mongo output answers, in order."""


@dataclass(frozen=True)
class Service:
    """A systemd unit as the probe saw it."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    main_pid: int

    @property
    def active(self) -> bool:
        return self.active_state == "active"


@dataclass(frozen=True)
class ReplicaMember:
    """One replica-set member from replSetGetStatus."""

    name: str
    health: int
    state: str
    machine_id: str
    is_self: bool

    @property
    def primary(self) -> bool:
        return self.state == "PRIMARY"


@dataclass(frozen=True)
class ControllerFacts:
    """What the probe found on a controller host."""

    host: str
    hostname: str
    profile: str
    machine_id: str
    tag: str
    juju_version: str
    series: str
    base: str
    controller_uuid: str
    model_uuid: str
    state_port: int
    api_port: int
    api_addresses: list[str]
    tools: dict[str, str]
    mongo_version: str
    tools_version: str
    services: list[Service]
    replset: list[ReplicaMember]
    replset_error: str
    mongo_ok: bool
    backup_dir: str
    free_bytes: int
    estimate_bytes: int
    db_sizes: dict[str, int]
    instance_id: str
    pigz: bool
    warnings: list[str] = field(default_factory=list)
    restore_journal: str = ""
    """restore's journal dir when one is on the host (an unfinished restore), else ''."""
    restore_steps_done: list[str] = field(default_factory=list)
    shell_version: str = ""
    mongo_tls: MongoTls | None = None
    """The TLS flags the remote scripts choose here (lib/mongo-tls): from the versions and ca.crt."""
    lock_holder: dict[str, Any] | None = None
    """The holder record of the controller's lock when the probe found it held ({} if unrecorded)."""
    models: list[str] | None = None
    """The controller's model names (juju.models, at most MAX_MODELS), None when not read."""

    @property
    def ha_nodes(self) -> int:
        """Number of controller nodes (replica-set members; 1 when the set is unknown)."""
        return max(1, len(self.replset))

    @property
    def primary(self) -> str:
        """Name of the PRIMARY member, or '' if none is."""
        return next((m.name for m in self.replset if m.primary), "")

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def unfinished_restore(self) -> str:
        """Return why a restore is unfinished on this host ('' when none is)."""
        if not self.restore_journal:
            return ""
        done = ", ".join(self.restore_steps_done) or "none"
        return f"unfinished restore on {self.host} (journal {self.restore_journal}; steps done: {done})"

    def missing_unit(self, unit: str) -> bool:
        """Return True when the probe saw systemd report `unit` as not found (no unit file)."""
        service = self.service(unit)
        return service is None or service.load_state in ("not-found", "")

    def unhealthy_reasons(self, profile: Profile) -> list[str]:
        """Given this host's profile, return why it is not a healthy controller (empty: healthy)."""
        reasons: list[str] = []
        db = self.service(profile.db_service)
        if db is None or not db.active:
            reasons.append(f"{profile.db_service} is not active")
        if not self.mongo_ok:
            reasons.append(
                "juju-db does not answer" + (f" ({self.replset_error})" if self.replset_error else "")
            )
        me = next((m for m in self.replset if m.is_self), None)
        if self.mongo_ok and me is not None and (me.health != 1 or me.state not in ("PRIMARY", "SECONDARY")):
            reasons.append(f"this replica-set member is {me.state}")
        return reasons

    def to_dict(self) -> dict[str, Any]:
        """Return the facts as plain data (for json/yaml output)."""
        data = asdict(self)
        data["ha_nodes"] = self.ha_nodes
        data["primary"] = self.primary
        return data


def parse_probe(doc: dict[str, Any], host: str = "") -> ControllerFacts:
    """Given the probe's JSON document (and the host's display name), return ControllerFacts.

    Raise RefusedError for an upstart/1.x controller, a host without a known layout, or no agent.conf.
    """
    paths = set(doc.get("paths") or [])
    conf = doc.get("agent_conf") or {}
    versions = doc.get("versions") or {}
    tools_link_version, _ = split_tools_dir(str(doc.get("tools_link", "")))
    profile = detect(
        paths,
        str(conf.get("format", "")),
        str(conf.get("upgradedToVersion") or tools_link_version),
        _version_in(str(versions.get("mongod", ""))),
    )
    if not conf.get("tag"):
        raise RefusedError(
            f"no machine agent.conf under /var/lib/juju/agents on {host or 'the host'}",
            hint="is this a Juju controller machine? `jujubackup status` shows what was found",
        )
    tag = str(conf["tag"])
    lines = _mongo_results(doc.get("mongo") or {})
    version, series = split_tools_dir(str(doc.get("tools_link", "")))
    os_release = doc.get("os_release") or {}
    replset, rs_error = parse_replset(lines.get("replSetGetStatus"), lines.get("replSetGetConfig"))
    sizes = db_sizes(lines)
    journal = doc.get("restore_journal") or {}
    return ControllerFacts(
        host=host,
        hostname=str(doc.get("hostname", "")),
        profile=profile.name,
        machine_id=machine_id_of(tag),
        tag=tag,
        juju_version=str(conf.get("upgradedToVersion") or version or UNKNOWN),
        series=series
        if series and series != "ubuntu"
        else str(os_release.get("VERSION_CODENAME") or UNKNOWN),
        base=base_of(os_release),
        controller_uuid=_strip_prefix(str(conf.get("controller", "")), "controller-"),
        model_uuid=_strip_prefix(str(conf.get("model", "")), "model-"),
        state_port=_int(conf.get("stateport"), 37017, "agent.conf's stateport", hi=65535),
        api_port=_int(conf.get("apiport"), 17070, "agent.conf's apiport", hi=65535),
        api_addresses=[str(a) for a in conf.get("apiaddresses") or []],
        tools={k: v for k, v in profile.tool_paths().items() if v in paths},
        **_mongo_versions(versions, CA_FILE in paths),
        services=[_service(s) for s in doc.get("services") or []],
        replset=replset,
        replset_error=rs_error,
        mongo_ok=bool(lines.get("ping", {}).get("ok")),
        backup_dir=str(doc.get("backup_dir", "")),
        free_bytes=_int(doc.get("free_bytes"), 0, "the probe's free_bytes"),
        estimate_bytes=sum(sizes.values()),
        db_sizes=sizes,
        instance_id=instance_id(lines.get("instanceData")),
        pigz=bool(doc.get("pigz")),
        restore_journal=str(journal.get("dir", "")) if journal.get("exists") else "",
        restore_steps_done=[str(step) for step in journal.get("done") or []],
        lock_holder=_holder(doc.get("lock") or {}),
        models=model_names(lines.get("models")),
    )


def _mongo_versions(versions: dict[str, Any], ca_file: bool) -> dict[str, Any]:
    """Given the probe's `versions` and whether juju-db's ca.crt exists, return the facts' mongo_version,
    tools_version, shell_version and mongo_tls (the flags the remote scripts choose: lib/mongo-tls)."""
    tools, shell = str(versions.get("mongodump", "")), str(versions.get("shell", ""))
    return {
        "mongo_version": _version_in(str(versions.get("mongod", ""))),
        "tools_version": _version_in(tools),
        "shell_version": _version_in(shell),
        "mongo_tls": MongoTls.choose(tools, shell, ca_file),
    }


def _holder(lock: dict[str, Any]) -> dict[str, Any] | None:
    """Given the probe's lock section, return the holder record if the lock is held, else None."""
    if not lock.get("held"):
        return None
    try:
        holder = json.loads(str(lock.get("holder") or "{}"))
    except json.JSONDecodeError:
        holder = {}
    return holder if isinstance(holder, dict) else {}


def _mongo_results(mongo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Given the probe's mongo section, return each statement's JSON result by name (unparsable: {})."""
    results: dict[str, dict[str, Any]] = {}
    for name, line in zip(MONGO_STATEMENTS, mongo.get("lines") or [], strict=False):
        try:
            value = json.loads(line)
        except (TypeError, json.JSONDecodeError):
            value = {}
        results[name] = value if isinstance(value, dict) else {}
    return results


def parse_replset(
    status: dict[str, Any] | None, config: dict[str, Any] | None = None
) -> tuple[list[ReplicaMember], str]:
    """Given replSetGetStatus and replSetGetConfig results, return (members, error message or '').

    Member tags (juju-machine-id) come from the status or, as in real mongod, from the config.
    """
    config_tags = {
        str(m.get("host", "")): m.get("tags") or {}
        for m in ((config or {}).get("config") or {}).get("members") or []
    }
    if not status:
        return [], "no answer from juju-db"
    if not status.get("ok"):
        return [], str(status.get("errmsg") or status.get("codeName") or "replSetGetStatus failed")
    members = []
    for m in status.get("members") or []:
        tags = m.get("tags") or config_tags.get(str(m.get("name", ""))) or {}
        members.append(
            ReplicaMember(
                name=str(m.get("name", "")),
                health=_int(m.get("health"), 0, "a replica set member's health", hi=1),
                state=str(m.get("stateStr", "")),
                machine_id=str(tags.get("juju-machine-id", "")),
                is_self=bool(m.get("self")),
            )
        )
    return members, ""


def db_sizes(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Given the mongo results, return bytes per database (dbStats dataSize, else listDatabases size)."""
    sizes: dict[str, int] = {}
    for db in ESTIMATE_DBS:
        stats = results.get(f"dbStats:{db}") or {}
        size = _int(stats.get("dataSize"), 0, f"dbStats {db}'s dataSize") if stats.get("ok") else 0
        if size > 0:
            sizes[db] = size
    for entry in (results.get("listDatabases") or {}).get("databases") or []:
        name = str(entry.get("name", ""))
        if name and name not in sizes and name not in ("admin", "local", "config", "backups"):
            sizes[name] = _int(entry.get("sizeOnDisk"), 0, f"listDatabases {name}'s sizeOnDisk")
    return sizes


def instance_id(result: dict[str, Any] | None) -> str:
    """Given the instanceData find result, return the machine's cloud instance id or UNKNOWN."""
    batch = ((result or {}).get("cursor") or {}).get("firstBatch") or []
    for doc in batch:
        value = doc.get("instanceid") or doc.get("instance-id")
        if value:
            return str(value)
    return UNKNOWN


MAX_MODELS = 101
"""How many models the probe reads (enough to tell "only the controller model" from "more")."""
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""A Juju model name (juju/names IsValidModelName); anything else is shown as '?'."""


def model_names(result: dict[str, Any] | None) -> list[str] | None:
    """Given the juju.models find result, return the model names ('?' for a malformed one), or None
    when the query failed (hostile input: nothing else of the documents is kept)."""
    if not result or not result.get("ok"):
        return None
    batch = (result.get("cursor") or {}).get("firstBatch")
    if not isinstance(batch, list):
        return None
    names = []
    for doc in batch[:MAX_MODELS]:
        name = doc.get("name") if isinstance(doc, dict) else None
        names.append(name if isinstance(name, str) and MODEL_NAME.match(name) else "?")
    return names


def machine_id_of(tag: str) -> str:
    """Given an agent tag `machine-N` (or `machine-0-lxd-1`), return the machine id `N` (`0/lxd/1`)."""
    if not tag.startswith("machine-"):
        raise RefusedError(
            f"agent tag {tag!r} is not a machine tag", hint="back up from a controller machine"
        )
    if not is_machine_tag_suffix(tag[len("machine-") :]):
        raise HostileOutputError("agent.conf's tag", tag, "a Juju machine tag (names.MachineTag)")
    return tag[len("machine-") :].replace("-", "/")


def split_tools_dir(path: str) -> tuple[str, str]:
    """Given a tools dir path `.../2.9.42-focal-amd64`, return (version, series-or-'ubuntu')."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    m = re.fullmatch(r"(\d+\.\d+(?:[.-][\w.]+?)?)-([a-z]+)-([a-z0-9]+)", name)
    return (m.group(1), m.group(2)) if m else ("", "")


def base_of(os_release: dict[str, Any]) -> str:
    """Given /etc/os-release values, return Juju's base string (`ubuntu@20.04`) or UNKNOWN."""
    os_id, version = os_release.get("ID"), os_release.get("VERSION_ID")
    return f"{os_id}@{version}" if os_id and version else UNKNOWN


def _service(raw: dict[str, Any]) -> Service:
    return Service(
        name=str(raw.get("name", "")),
        load_state=str(raw.get("LoadState", "")),
        active_state=str(raw.get("ActiveState", "")),
        sub_state=str(raw.get("SubState", "")),
        main_pid=_int(raw.get("MainPID"), 0, "a service's MainPID", hi=2**31 - 1),
    )


def _version_in(text: str) -> str:
    m = re.search(r"v?(\d+\.\d+\.\d+[\w.-]*)", text)
    return m.group(1) if m else ""


def _strip_prefix(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


def _int(value: Any, default: int, what: str, *, hi: int = MAX_INT64) -> int:
    """Given a number from the probe, return it (`default` when absent or empty), bounded to
    0..`hi` (default 2^63-1). Raise HostileOutputError (exit 8) for anything else: inf, a
    negative, a fraction, text (a bare int() ended as exit 1 or took a size no disk has)."""
    if value is None or value == "":
        return default
    return remote_int(value, what, lo=0, hi=hi)
