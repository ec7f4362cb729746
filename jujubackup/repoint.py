"""PURE: what re-pointing the model's agents at a restored controller works on (issue 14).

The restored controller's database says which machines have agents and where they are; this module
turns repoint-list's output (hostile input: every value is validated before it names a host, and a
record that does not validate is reported, never used) into an Inventory, and repoint-machine's
output into a MachineReport. No I/O here.

As Juju's 2.x restore (state/backups/restore.go updateAllMachines, juju-2.8): every machine that is
not a controller (JobManageModel) and not dead, reached at its public address
(network.SelectPublicAddress) as ubuntu over SSH. The new addresses are what the controller tells
agents (controllers/apiHostPortsForAgents) without the machine-local and link-local ones, as the
agents' own api-address updater stores them (network.FilterUnusableHostPorts).
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jujubackup.errors import RemoteStepError
from jujubackup.metadata import is_machine_id
from jujubackup.rewrite import is_controller_machine

# Every pattern below is used with fullmatch: `$` alone also matches before a trailing newline.
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*", re.ASCII
)
TAG_RE = re.compile(r"(?:machine|unit|application)-[a-z0-9-]{1,200}", re.ASCII)
INT_TEXT_RE = re.compile(r"-?[0-9]{1,19}", re.ASCII)
MAX_MACHINE_ID = 200  # a machine id longer than this is no machine Juju made (nesting depth)
LIFE_DEAD = 2
SCOPE_ORDER = ("public", "local-cloud", "local-fan", "")  # network.SelectPublicAddress preference
UNUSABLE_SCOPES = ("local-machine", "link-local")
MAX_NAME = 64


@dataclass(frozen=True)
class Machine:
    """One machine of the model whose agents need the new addresses.

    `problem` says why it cannot be re-pointed over SSH (a Kubernetes model, no usable address);
    empty when it can."""

    model_uuid: str
    model_name: str
    machine_id: str
    address: str
    problem: str = ""

    @property
    def key(self) -> str:
        """Return `<model-uuid>:<machine-id>` (the machines document _id)."""
        return f"{self.model_uuid}:{self.machine_id}"


@dataclass(frozen=True)
class Inventory:
    """What the restored controller's database says: the machines and the agents' API addresses."""

    controller_uuid: str
    machines: tuple[Machine, ...]
    api_addresses: tuple[str, ...]
    rejected: tuple[str, ...] = ()  # records that did not validate, described (never used)
    controller_model: str = ""  # the controller model's uuid (controllers/e "model-uuid")
    demoted: tuple[str, ...] = ()
    """Controller-model machine ids the restore of this controller demoted, from the record it left
    on the controller (RESTORE_RECORD; parse_restore_record)."""


RESTORE_RECORD = "/var/lib/jujubackup/restored-controller.json"
"""Where a restore records, on the restored controller, what a later `repoint` from any workstation
must know and the database no longer tells: the backup's other controllers it demoted (their machine
documents look like workload machines' since; rewrite.is_controller_machine). repoint-list reads it."""
MAX_RECORD = 65536


@dataclass(frozen=True)
class AgentReport:
    """One agent's outcome on its machine."""

    tag: str
    changed: bool
    restarted: bool
    state: str  # connected | failing | none
    address: str = ""
    error: str = ""


@dataclass(frozen=True)
class MachineReport:
    """What repoint-machine reported."""

    agents: tuple[AgentReport, ...]
    diff: str = ""
    dry_run: bool = False

    @property
    def connected(self) -> bool:
        """True when every agent is connected."""
        return bool(self.agents) and all(a.state == "connected" for a in self.agents)


@dataclass
class Outcome:
    """The result for one machine: `result` is done | failed | unreachable | skipped | planned."""

    machine: Machine
    result: str
    why: str = ""
    agents: tuple[AgentReport, ...] = ()
    diff: str = ""
    by_hand: str = ""
    earlier: bool = False  # done by an earlier run (--resume)
    extra: dict[str, Any] = field(default_factory=dict)


def format_hostport(host: str, port: int) -> str:
    """Given an address and port, return `host:port` (`[v6]:port` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def valid_address(value: Any) -> str | None:
    """Given a value from the database, return it if it is an IP address or a DNS name, else None."""
    if not isinstance(value, str) or not value or len(value) > 253:
        return None
    if "%" in value:
        return None  # an IPv6 zone ("fe80::1%eth0") is no address of another machine, and any text
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return value if HOSTNAME_RE.fullmatch(value) else None


def _scope_rank(addr: Mapping[str, Any]) -> int:
    scope = str(addr.get("networkscope") or "")
    return SCOPE_ORDER.index(scope) if scope in SCOPE_ORDER else len(SCOPE_ORDER)


def _usable(addr: Any) -> str | None:
    """Return the validated value of an address document unless machine-local/link-local."""
    if not isinstance(addr, Mapping) or str(addr.get("networkscope") or "") in UNUSABLE_SCOPES:
        return None
    value = valid_address(addr.get("value"))
    if value is None:
        return None
    ip = _ip(value)
    if ip is not None and (ip.is_loopback or ip.is_link_local):
        return None
    return value


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def select_address(doc: Mapping[str, Any]) -> str | None:
    """Given a machines document, return the address to SSH to (preferred public address, else the
    best-scoped usable one of `addresses`, as network.SelectPublicAddress), or None."""
    preferred = _usable(doc.get("preferredpublicaddress"))
    if preferred:
        return preferred
    addrs = [a for a in doc.get("addresses") or [] if isinstance(a, Mapping) and _usable(a)]
    addrs.sort(key=_scope_rank)
    return _usable(addrs[0]) if addrs else None


def _batch(reply: Any, what: str) -> list[dict[str, Any]]:
    """Return the documents of a find reply. Raise ValueError if it failed or needs a getMore."""
    if not isinstance(reply, Mapping) or reply.get("ok") not in (1, 1.0, True):
        errmsg = reply.get("errmsg") if isinstance(reply, Mapping) else None
        raise ValueError(f"reading {what} failed: {str(errmsg or 'not a find reply')[:200]}")
    cursor = reply.get("cursor")
    if not isinstance(cursor, Mapping) or not isinstance(cursor.get("firstBatch"), list):
        raise ValueError(f"reading {what}: no cursor in the reply")
    if _int(cursor.get("id")) not in (0, None):
        raise ValueError(f"reading {what}: more documents than one batch holds")
    return [d for d in cursor["firstBatch"] if isinstance(d, dict)]


def _int(value: Any) -> int | None:
    """Return an int from a JSON number or an extended-JSON {"$numberLong"/"$numberInt": "N"}."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        for key in ("$numberLong", "$numberInt"):
            if isinstance(value.get(key), str) and INT_TEXT_RE.fullmatch(value[key]):
                return int(value[key])
    return None


def _name(value: Any) -> str:
    text = str(value) if isinstance(value, str) else ""
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text) else "?"


def agent_addresses(reply: Any) -> tuple[str, ...]:
    """Given the find reply for controllers/apiHostPortsForAgents, return the usable `host:port`s
    in order (duplicates dropped). Raise ValueError if there is none."""
    docs = _batch(reply, "apiHostPortsForAgents")
    out: list[str] = []
    servers = docs[0].get("apihostports") if docs else None
    for server in servers if isinstance(servers, list) else []:
        for hp in server if isinstance(server, list) else []:
            value, port = _usable(hp), _int(hp.get("port")) if isinstance(hp, Mapping) else None
            if value and port and 0 < port < 65536:
                entry = format_hostport(value, port)
                if entry not in out:
                    out.append(entry)
    if not out:
        raise ValueError("the controller's apiHostPortsForAgents holds no usable address")
    return tuple(out)


def parse_listing(doc: Any) -> Inventory:
    """Given repoint-list's JSON document, return the Inventory: the machines that are not dead
    and not controllers, sorted by model name and machine id. A controller is what Juju's state
    says one is: a machine whose jobs hold JobManageModel (state/machine.go IsManager, by
    rewrite.is_controller_machine: the rule the restore demotes by) or one named in the controller
    info's controller-ids (state/controller.go ControllerInfo.ControllerIds, the machines whose
    controllerNodes documents state/enableha.go counts). A machine record that does not validate
    is listed in `rejected`. Raise ValueError if the document itself is unusable."""
    if not isinstance(doc, Mapping):
        raise ValueError("repoint-list printed no JSON object")
    models: dict[str, tuple[str, str]] = {}
    for m in _batch(doc.get("models"), "models"):
        uuid = m.get("_id")
        if isinstance(uuid, str) and UUID_RE.fullmatch(uuid):
            models[uuid] = (_name(m.get("name")), str(m.get("type") or "iaas"))
    controller = _batch(doc.get("controller"), "controller info")
    controller_ids = set()
    if controller:
        ids = controller[0].get("controller-ids")
        controller_ids = {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()
    controller_model = _controller_model(controller)
    api = agent_addresses(doc.get("hostports"))
    machines: list[Machine] = []
    rejected: list[str] = []
    for m in _batch(doc.get("machines"), "machines"):
        model, mid = m.get("model-uuid"), m.get("machineid")
        if not (isinstance(model, str) and UUID_RE.fullmatch(model) and isinstance(mid, str)
                and len(mid) <= MAX_MACHINE_ID and is_machine_id(mid)):
            rejected.append(f"machine record {str(m.get('_id'))[:80]!r}: invalid model uuid or machine id")
            continue
        raw_jobs = m.get("jobs")
        jobs = [_int(j) for j in raw_jobs] if isinstance(raw_jobs, list) else []
        if _int(m.get("life")) == LIFE_DEAD or is_controller_machine({**m, "jobs": jobs}, controller_model):
            continue
        if model == controller_model and mid in controller_ids:
            continue
        name, kind = models.get(model, ("?", "?"))
        address = select_address(m) or ""
        problem = ""
        if kind == "caas":
            problem = "Kubernetes model: its agents run in pods, not reachable over SSH"
        elif model not in models:
            problem = "its model is not in the database"
        elif not address:
            problem = "no usable address in the database"
        machines.append(Machine(model, name, mid, address, problem))
    machines.sort(key=lambda x: (x.model_name, _id_key(x.machine_id)))
    tag = str(doc.get("controller_tag") or "")
    uuid = tag.removeprefix("controller-") if UUID_RE.fullmatch(tag.removeprefix("controller-")) else ""
    demoted, problem = parse_restore_record(doc.get("restore_record"), uuid)
    if problem:
        rejected.append(problem)
    return Inventory(controller_uuid=uuid, machines=tuple(machines), api_addresses=api,
                     rejected=tuple(rejected), controller_model=controller_model, demoted=demoted)


def restore_record(controller_uuid: str, machine_id: str, demoted: Sequence[str]) -> str:
    """Given the restored controller's uuid, machine id and the demoted machine ids, return the
    restore record's text (one line of JSON; ids only, no secret)."""
    return json.dumps({"controller-uuid": controller_uuid, "machine": machine_id,
                       "demoted": sorted(set(demoted), key=_id_key)}, sort_keys=True)


def parse_restore_record(text: Any, controller_uuid: str) -> tuple[tuple[str, ...], str]:
    """Given the restore record repoint-list read (a string; "" when there is none: hostile input)
    and the controller's uuid, return (demoted machine ids, problem): the ids only when the record is
    a JSON object naming this controller whose `demoted` holds valid machine ids (names.IsValidMachine,
    top-level), else () and what was wrong ("" when there is no record)."""
    if not isinstance(text, str) or not text.strip():
        return (), ""
    if len(text) > MAX_RECORD:
        return (), "restore record: too large"
    try:
        doc = json.loads(text)
    except ValueError:
        return (), "restore record: not JSON"
    if not isinstance(doc, dict) or not isinstance(doc.get("demoted"), list):
        return (), "restore record: not a record of demoted machines"
    if not controller_uuid or doc.get("controller-uuid") != controller_uuid:
        return (), "restore record: written for another controller"
    ids = doc["demoted"]
    if not all(isinstance(i, str) and len(i) <= MAX_MACHINE_ID and is_machine_id(i) and "/" not in i
               for i in ids):
        return (), "restore record: an invalid machine id"
    return tuple(ids), ""


def _controller_model(controller: Sequence[Mapping[str, Any]]) -> str:
    return str(controller[0].get("model-uuid") or "") if controller else ""


def _id_key(mid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in mid.split("/") if p.isdigit())


def parse_machine_report(doc: Any, host: str) -> MachineReport:
    """Given repoint-machine's JSON document, return the MachineReport. Raise RemoteStepError if
    it is malformed (an agent tag that is not an agent's, a non-boolean flag, …)."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("agents"), list):
        raise RemoteStepError("repoint-machine", 0, "no agents in its JSON output", host=host)
    agents = []
    for a in doc["agents"]:
        if not (isinstance(a, Mapping) and isinstance(a.get("tag"), str) and TAG_RE.fullmatch(a["tag"])
                and isinstance(a.get("changed"), bool) and isinstance(a.get("restarted"), bool)
                and a.get("state") in ("connected", "failing", "none")):
            raise RemoteStepError("repoint-machine", 0, f"malformed agent entry {str(a)[:120]}", host=host)
        agents.append(AgentReport(a["tag"], a["changed"], a["restarted"], a["state"],
                                  str(a.get("address") or "")[:300], str(a.get("error") or "")[:500]))
    return MachineReport(tuple(agents), str(doc.get("diff") or ""), bool(doc.get("dry_run")))


def by_hand(machine: Machine, addresses: Sequence[str], via: str | None = None) -> str:
    """Return the shell command that re-points `machine` by hand: over SSH as ubuntu (through
    `via` with -J when given), rewrite the apiaddresses list of every agent.conf (GNU sed -i keeps
    mode and owner) and restart the agents."""
    if not machine.address:
        return ""
    lines = "\\n".join(f"- {a}" for a in addresses)
    sed = (f"sudo sed -i -e '/^apiaddresses:/,/^[^-]/{{/^- /d}}' -e '/^apiaddresses:/a {lines}' "
           "/var/lib/juju/agents/*/agent.conf && sudo systemctl restart 'jujud-machine-*' 'jujud-unit-*'")
    jump = f"-J {shlex.quote(via)} " if via else ""
    return f"ssh {jump}{shlex.quote('ubuntu@' + machine.address)} {shlex.quote(sed)}"
