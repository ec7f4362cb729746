"""The pure half of probing a restore's target: the TargetFacts the plan needs, built from a
controller's probe facts or a spare's restore-preflight document (hostile input: parsed and
bounded here), the instance id the restored machine gets and whether it is re-addressed. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from jujubackup import facts, profiles
from jujubackup.facts import ControllerFacts
from jujubackup.remote_values import remote_int
from jujubackup.restore import plan as P

_XYZ = re.compile(r"\d{1,4}\.\d{1,4}\.\d{1,4}", re.ASCII)
"""A tool version the steps may be given (restore/params.py accepts nothing else)."""


@dataclass(frozen=True)
class TargetProbe(P.TargetFacts):
    """TargetFacts plus what only the operation needs: the peer probes and the current instance id."""

    peers: tuple[P.PeerProbe, ...] = ()
    instance_id: str = ""
    cloud_instance_id: str = ""


def target_probe(
    found: ControllerFacts | None, pre: dict[str, Any], name: str, connected: str, asked: str | None,
    juju_version: str,
) -> TargetProbe:
    """Given the target's controller facts (None: a spare), its restore-preflight document, its
    name, the address it was connected at, --address and the backup's Juju version, return the
    TargetProbe: the address is --address, else the connected one when the target has it, else its
    first; the backup's old controllers that answered from the target (not its own addresses).
    Raise HostileOutputError for a count or port out of range."""
    base = target_from_facts(found, name) if found else spare_from_preflight(pre, name, juju_version)
    addresses = tuple(str(a) for a in pre.get("addresses") or [])
    address = asked or (connected if connected in addresses else (addresses[0] if addresses else connected))
    peers = tuple(
        P.PeerProbe(str(p["address"]), remote_int(p["port"], "restore-preflight's peer port", host=name,
                                                  lo=1, hi=65535), bool(p["answers"]))
        for p in pre.get("peers") or []
        if str(p["address"]) not in addresses
    )
    if base.mongo_version is None and base.profile is not None:
        line = str((pre.get("mongod_versions") or {}).get(profiles.profile_named(base.profile).mongod, ""))
        base = replace(base, mongo_version=version_in(line) or None)
    return TargetProbe(
        **{
            **base.__dict__,
            "address": address,
            "addresses": addresses,
            "free_bytes": remote_int(pre.get("free_bytes"), "restore-preflight's free_bytes", host=name,
                                     default=0),
            "state_bytes": remote_int(pre.get("state_bytes"), "restore-preflight's state_bytes",
                                      host=name, default=0),
            "raft_state": bool(pre.get("raft_state")),
            "raft_machines": raft_machines(pre.get("raft_machines")),
            **dqlite_facts(pre.get("dqlite"), name),
        },
        peers=peers,
        instance_id=found.instance_id if found else "",
        cloud_instance_id=cloud_instance_id(pre.get("cloud_instance_id")),
    )


CLOUD_INSTANCE_FILE = "/var/lib/cloud/data/instance-id"
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def cloud_instance_id(value: object) -> str:
    """Given what the target's preflight read from cloud-init's instance-id file, return it when it
    looks like an instance id (letters, digits, . _ : / @ + -; at most 128), else "" (hostile input:
    the value goes into the restored database)."""
    text = str(value or "").strip()
    return text if INSTANCE_ID.match(text) else ""


def dqlite_facts(value: object, host: str) -> dict[str, Any]:
    """Given the preflight's `dqlite` section ({node, servers, loopback}), return the TargetFacts
    fields dqlite_node and dqlite_servers. Raise HostileOutputError for a count out of range."""
    doc = value if isinstance(value, dict) else {}
    return {
        "dqlite_node": doc.get("node") is True,
        "dqlite_servers": remote_int(doc.get("servers"), "restore-preflight's dqlite servers", host=host,
                                     default=0, hi=10_000),
    }


def raft_machines(value: object) -> tuple[str, ...]:
    """Given the preflight's list of machine tags found in the target's raft state, return the
    well-formed ones (`machine-N`), sorted and unique."""
    items = value if isinstance(value, list) else []
    return tuple(sorted({str(t) for t in items if re.fullmatch(r"machine-\d{1,9}", str(t))}))


def choose_instance_id(request_id: str | None, target: TargetProbe) -> tuple[str, str]:
    """Given --instance-id and the target's probe, return (instance id, where it came from): the
    flag, the target's own Juju controller, cloud-init's instance id, else manual:<address>."""
    if request_id:
        return request_id, "--instance-id"
    if target.instance_id and target.instance_id != facts.UNKNOWN:
        return target.instance_id, f"{target.name}'s Juju controller"
    if target.cloud_instance_id:
        return target.cloud_instance_id, f"cloud-init on {target.name} ({CLOUD_INSTANCE_FILE})"
    return f"manual:{target.address}", f"no cloud-init instance id on {target.name}: a manual machine"


def target_facts_peers(target: P.TargetFacts) -> tuple[P.PeerProbe, ...]:
    return target.peers if isinstance(target, TargetProbe) else ()


def target_from_facts(found: ControllerFacts, name: str) -> P.TargetFacts:
    """Given a controller's probe facts, return its TargetFacts (address filled in by the caller)."""
    return P.TargetFacts(
        name=name,
        address="",
        profile=found.profile,
        juju_version=found.juju_version if found.juju_version != facts.UNKNOWN else None,
        controller_uuid=found.controller_uuid or None,
        machine_id=found.machine_id,
        mongo_version=found.mongo_version or None,
        shell_version=found.shell_version if _XYZ.fullmatch(found.shell_version) else "",
        tools_version=found.tools_version if _XYZ.fullmatch(found.tools_version) else "",
        live_services=tuple(s.name for s in found.services if s.active),
        has_state=True,
        models=tuple(found.models) if found.models is not None else None,
        model_uuid=found.model_uuid or None,
    )


def spare_from_preflight(pre: dict[str, Any], name: str, juju_version: str = "") -> P.TargetFacts:
    """Given the preflight of a host without a Juju controller and the Juju version to restore,
    return its TargetFacts: the first profile whose mongod and mongorestore exist there and whose
    Juju and mongod versions match (Profile.detect_juju, detect_mongod), else the first whose tools
    exist; whether a juju-db data dir exists; no Juju."""
    existing = {str(p) for p in pre.get("existing") or []}
    versions = pre.get("mongod_versions") or {}
    installed = [p for p in profiles.PROFILES if p.mongod in existing and p.mongorestore in existing]
    matching = [
        p
        for p in installed
        if juju_version.startswith(p.detect_juju)
        and version_in(str(versions.get(p.mongod, ""))).startswith(p.detect_mongod)
    ]
    profile = next((p.name for p in [*matching, *installed]), None)
    has_db = any(p.db_path in existing for p in profiles.PROFILES)
    return P.TargetFacts(name=name, address="", profile=profile, has_state=has_db)


def needs_readdress(mode: P.Mode, backup: P.BackupFacts, target: P.TargetFacts) -> bool:
    """Re-address unless the backup goes back onto its own single controller at the same address."""
    restored = backup.restored
    same_place = restored is not None and target.address in restored.addresses and not backup.others
    return not (mode is P.Mode.same and same_place)


def version_in(text: str) -> str:
    match = re.search(r"(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else ""
