"""PURE: the BackupFacts the plan needs, from an archive's metadata.json, the backed-up machine's
agent.conf and the dump's `juju.machines` documents (hostile input: the controller machines are
decided by rewrite.is_controller_machine, the rule the re-addressing applies), and the old
controllers' endpoints the target probes."""

from __future__ import annotations

from collections.abc import Sequence

from jujubackup import rewrite
from jujubackup.metadata import BackupMetadata, restore_machine_id
from jujubackup.restore.plan import BackupFacts, ControllerMachine, TargetFacts


def backup_facts(
    metadata: BackupMetadata,
    agent_conf: dict[str, object],
    machines: Sequence[dict[str, object]],
    *,
    backup_id: str,
    archive_size: int,
    unpacked_size: int,
    has_oplog: bool,
) -> BackupFacts:
    """Given the archive's metadata (FormatVersion 0 or 1), the backed-up machine's parsed agent.conf,
    the dump's `juju.machines` documents and sizes, return the BackupFacts.
    Raise VerifyError (exit 8) if the machine id is no Juju machine id, RefusedError for a container.

    Controller machines are the controller model's machines with JobManageModel; their addresses are
    the non-loopback `addresses` + `machineaddresses`, plus agent.conf `apiaddresses` hosts.
    """
    model_uuid = str(agent_conf.get("model", "")).removeprefix("model-") or metadata.model_uuid
    controller_uuid = metadata.controller_uuid or str(agent_conf.get("controller", "")).removeprefix(
        "controller-"
    )
    machine_id = restore_machine_id(metadata)  # a Juju machine id, or VerifyError/RefusedError
    controllers = _controller_machines(machines, model_uuid)
    listed = {a for c in controllers for a in c.addresses}
    api_hosts = tuple(
        h for h in (_host_of(str(a)) for a in _list(agent_conf.get("apiaddresses"))) if h not in listed
    )
    if api_hosts:
        controllers = (*controllers, ControllerMachine("?", api_hosts))
    mongo = str(agent_conf.get("mongoversion") or "") or None
    return BackupFacts(
        backup_id=backup_id,
        controller_uuid=controller_uuid,
        model_uuid=model_uuid,
        machine_id=machine_id,
        juju_version=metadata.version or str(agent_conf.get("upgradedToVersion", "")),
        series=metadata.series or metadata.base,
        mongo_version=mongo,
        archive_size=archive_size,
        unpacked_size=unpacked_size,
        state_port=int(str(agent_conf.get("stateport") or 37017)),
        api_port=int(str(agent_conf.get("apiport") or 17070)),
        controllers=controllers,
        has_oplog=has_oplog,
        ca_cert=str(agent_conf.get("cacert") or ""),
    )


def peer_endpoints(backup: BackupFacts, target: TargetFacts) -> list[tuple[str, int]]:
    """Given the facts, return the (address, port) pairs of old controllers to probe from the target:
    every controller address named in the backup except the target's own, on the API and state ports."""
    own = {target.address, *target.addresses, "127.0.0.1", "::1", "localhost"}
    addrs = sorted({a for c in backup.controllers for a in c.addresses if a not in own})
    return [(a, p) for a in addrs for p in (backup.api_port, backup.state_port)]


def _controller_machines(
    machines: Sequence[dict[str, object]], model_uuid: str
) -> tuple[ControllerMachine, ...]:
    """The controller machines by rewrite.is_controller_machine: the same rule the re-addressing
    applies when it demotes them, so the plan names exactly the machines the rewrite changes."""
    found = [
        ControllerMachine(rewrite.machine_id_of(doc), _addresses(doc))
        for doc in machines
        if rewrite.is_controller_machine(doc, model_uuid)
    ]
    return tuple(sorted(found, key=lambda c: (len(c.machine_id), c.machine_id)))


def _addresses(doc: dict[str, object]) -> tuple[str, ...]:
    out: list[str] = []
    for key in ("addresses", "machineaddresses"):
        for entry in _list(doc.get(key)):
            if not isinstance(entry, dict) or entry.get("networkscope") == "local-machine":
                continue
            value = str(entry.get("value", ""))
            if value and value not in out:
                out.append(value)
    return tuple(out)


def _host_of(hostport: str) -> str:
    host, _, _ = hostport.rpartition(":")
    return host.strip("[]") or hostport


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
