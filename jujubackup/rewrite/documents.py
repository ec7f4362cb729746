"""The per-collection rules: which documents of machines, instanceData, controllers, controllerNodes,
settings change."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from jujubackup.rewrite.fields import _is_local, _new_entry, _set, _set_present, readdress_list
from jujubackup.rewrite.layout import (
    CONTROLLER_NODES,
    CONTROLLERS,
    HARVEST_MODE_KEY,
    INSTANCE_DATA,
    JOB_HOST_UNITS,
    JOB_MANAGE_MODEL,
    MACHINES,
    SETTINGS,
    Change,
    Doc,
    ReaddressTarget,
)


def _machine_key(doc: Mapping[str, Any]) -> tuple[str, str]:
    """Return (model uuid, machine id) of a machines/instanceData document (1.x and 2.x layouts)."""
    doc_id = str(doc.get("_id", ""))
    owner = str(doc.get("model-uuid", doc.get("env-uuid", "")))
    mid = str(doc.get("machineid", doc_id.rpartition(":")[2]))
    if not owner and ":" in doc_id:
        owner = doc_id.rpartition(":")[0]
    return owner, mid


def _in_model(doc: Mapping[str, Any], target: ReaddressTarget) -> bool:
    owner, _ = _machine_key(doc)
    return not owner or owner == target.controller_model_uuid


def machine_id_of(doc: Mapping[str, Any]) -> str:
    """Return the machine id of a juju.machines document (1.x and 2.x+ layouts)."""
    return _machine_key(doc)[1]


def is_controller_machine(doc: Mapping[str, Any], controller_model_uuid: str) -> bool:
    """THE rule for which machines are controllers (plan.py and this module both use it): a
    juju.machines document of the controller model (or of no model: 1.x) whose `jobs` hold
    JobManageModel (2) - Juju's Machine.IsManager (state/machine.go)."""
    owner, _ = _machine_key(doc)
    if owner and controller_model_uuid and owner != controller_model_uuid:
        return False
    jobs = doc.get("jobs")
    return isinstance(jobs, list) and JOB_MANAGE_MODEL in jobs


def rewrite_machine(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.machines document in place: re-address the restored machine, demote the
    other controller machines of the controller model, leave every other machine alone."""
    coll = "juju.machines"
    if not _in_model(doc, target):
        return
    if _machine_key(doc)[1] == target.machine_id:
        a = target.new_address
        _set(doc, "addresses", readdress_list(doc.get("addresses"), a, "provider"), changes, coll)
        _set(
            doc, "machineaddresses", readdress_list(doc.get("machineaddresses"), a, "machine"), changes, coll
        )
        for key in ("preferredpublicaddress", "preferredprivateaddress"):
            template = doc.get(key) if isinstance(doc.get(key), dict) and doc.get(key) else None
            new = _new_entry(template, a, {"networkscope": "local-cloud", "origin": "provider"})
            _set(doc, key, new, changes, coll)
        _set_present(doc, "instanceid", target.new_instance_id, changes, coll)
        _set_present(doc, "hasvote", True, changes, coll)
        _set_present(doc, "wantsvote", True, changes, coll)
    elif is_controller_machine(doc, target.controller_model_uuid):
        jobs = [j for j in doc["jobs"] if j != JOB_MANAGE_MODEL] or [JOB_HOST_UNITS]
        _set(doc, "jobs", jobs, changes, coll)
        _set_present(doc, "hasvote", False, changes, coll)
        _set_present(doc, "wantsvote", False, changes, coll)


def rewrite_instance_data(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.instanceData document: the restored machine's `instanceid`."""
    if _in_model(doc, target) and _machine_key(doc)[1] == target.machine_id:
        _set(doc, "instanceid", target.new_instance_id, changes, "juju.instanceData")


def _hostport_template(servers: Any) -> Doc | None:
    """Return the first non-loopback hostport of an `apihostports` list (else the first one)."""
    flat = [hp for srv in (servers or []) if isinstance(srv, list) for hp in srv if isinstance(hp, dict)]
    for hp in flat:
        if not _is_local(hp):
            return hp
    return flat[0] if flat else None


def rewrite_controllers(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.controllers document: controller ids -> [M]; API host ports -> [[A:port]]."""
    coll = "juju.controllers"
    doc_id = doc.get("_id")
    if doc_id == "e":
        for key in ("controller-ids", "machineids", "votingmachineids"):
            _set_present(doc, key, [target.machine_id], changes, coll)
    elif doc_id in ("apiHostPorts", "apiHostPortsForAgents"):
        template = _hostport_template(doc.get("apihostports"))
        defaults = {"networkscope": "local-cloud", "port": 17070}
        _set(doc, "apihostports", [[_new_entry(template, target.new_address, defaults)]], changes, coll)


REMOVED = "<document>"
"""Change.field of a document the rewrite removes (Change.new is None)."""


def rewrite_controller_node(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.controllerNodes document: the restored node has and wants a vote; any
    other node's document is removed (emptied: the stream drops it)."""
    doc_id = str(doc.get("_id", ""))
    if doc_id in (target.machine_id, f"{target.controller_model_uuid}:{target.machine_id}"):
        for key in ("has-vote", "wants-vote"):
            _set(doc, key, True, changes, "juju.controllerNodes")
        return
    changes.append(Change("juju.controllerNodes", doc.get("_id"), REMOVED, "controller node", None))
    doc.clear()


def rewrite_settings(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.settings document: in a model's config (`_id` "<model uuid>:e"),
    provisioner-harvest-mode "none"; the Change names the model and keeps the earlier value."""
    doc_id = str(doc.get("_id", ""))
    owner = str(doc.get("model-uuid") or doc_id.rpartition(":")[0])
    config = doc.get("settings")
    if not owner or doc_id != f"{owner}:e" or not isinstance(config, dict):
        return
    before = len(changes)
    _set(doc, f"settings.{HARVEST_MODE_KEY}", "none", changes, "juju.settings")
    if len(changes) > before:
        name = config.get("name")
        changes[-1] = replace(changes[-1], label=name if isinstance(name, str) else "")


def harvest_changes(changes: Iterable[Change]) -> list[Change]:
    """Given rewrite changes, return those that turned a model's harvest mode to "none"."""
    return [
        c for c in changes if c.collection == "juju.settings" and c.field == f"settings.{HARVEST_MODE_KEY}"
    ]


DocRule = Callable[[Doc, ReaddressTarget, list[Change]], None]
RULES: dict[str, DocRule] = {
    MACHINES: rewrite_machine,
    INSTANCE_DATA: rewrite_instance_data,
    CONTROLLERS: rewrite_controllers,
    CONTROLLER_NODES: rewrite_controller_node,
    SETTINGS: rewrite_settings,
}


