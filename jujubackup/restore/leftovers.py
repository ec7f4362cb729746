"""PURE: what a restore target keeps that no backup holds (Juju's file list, state/backups/files.go,
has neither /var/lib/juju/raft nor /var/lib/juju/dqlite), and the refusals and plan lines it leads to:
2.x raft state, 3.x dqlite node, a freshly bootstrapped controller's own identity. No I/O."""

from __future__ import annotations

import re


def version_tuple(version: str) -> tuple[int, int, int]:
    """Given a Juju or mongo version ("2.9.42", "2.8-beta1.1", "3.6.3/wiredTiger"), return
    (major, minor, patch) ignoring tags and build numbers. Raise ValueError if it has no major.minor."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:[.-]([a-z]*)(\d+))?", version)
    if not match:
        raise ValueError(f"not a version: {version!r}")
    patch = int(match.group(4)) if match.group(4) and not match.group(3) else 0
    return int(match.group(1)), int(match.group(2)), patch


def raft_refusals(
    name: str, machine_id: str, raft_state: bool, raft_machines: tuple[str, ...]
) -> list[tuple[str, str]]:
    """Given the target's name, the restored machine id and the target's raft state and the machine
    tags it names, return the (message, hint) refusals. A 2.x raft state on the target that names
    other machines but not the restored one leaves the restored controller without a raft leader (no
    leases or leadership): juju/juju worker/raft/raftbackstop/worker.go recovers only a configuration
    holding the local server. Not overridable: --force would only make a controller that never works."""
    tag = f"machine-{machine_id}"
    if not raft_state or not raft_machines or tag in raft_machines:
        return []
    return [(
        f"{name} has a raft state (/var/lib/juju/raft) of {', '.join(raft_machines)}, "
        f"not of {tag}: the restored controller would never get a raft leader (no leases, no "
        "leadership)",
        f"restore onto a machine without /var/lib/juju/raft (a fresh one), or onto the controller that "
        f"was {tag}; moving its raft dir aside is not enough on a live controller",
    )]


def dqlite_refusals(name: str, juju_version: str, dqlite_node: bool) -> list[tuple[str, str]]:
    """Given the target's name, the backup's Juju version and whether the target has a dqlite node,
    return the (message, hint) refusals. A Juju 3.x controller needs a dqlite node that ran before:
    on an empty /var/lib/juju/dqlite the dbaccessor waits to join peers (juju/juju
    worker/dbaccessor/worker.go joinNodeToCluster: "no addresses available for this Dqlite node to
    join cluster"), so the lease manager and the API never start. Only `juju bootstrap` makes a first
    node (agentbootstrap: database.BootstrapDqlite, the schema of that exact Juju build); nothing
    here can, and a backup holds no dqlite state. Not overridable."""
    try:
        major, minor, _ = version_tuple(juju_version)
    except ValueError:
        return []
    if major < 3 or dqlite_node:
        return []
    return [(
        f"{name} has no dqlite node (/var/lib/juju/dqlite is missing or empty): a Juju "
        f"{juju_version} controller restored there would never open its API (its dbaccessor "
        "waits for dqlite peers that do not exist)",
        f"bootstrap a Juju {major}.{minor} controller on {name} first (`juju bootstrap` onto that "
        f"machine), then restore over it: `jujubackup restore --archive FILE --target {name}`",
    )]


def dqlite_machine_refusals(
    name: str, juju_version: str, target_machine: str | None, machine_id: str
) -> list[tuple[str, str]]:
    """Given a freshly bootstrapped target's name and machine id, the backup's Juju version and
    machine id, return the (message, hint) refusals. The target's dqlite node was made for its own
    controller id: the 3.x dbaccessor records the node under the controller (machine) id it runs as
    (juju/juju worker/dbaccessor/worker.go initialiseDqlite: nodeService().UpdateDqliteNode(
    ControllerID, ...), juju/worker/v4 era), so a restored controller of another machine id finds no
    record of its own; not verified against a real 3.6, hence --force overrides it."""
    try:
        major = version_tuple(juju_version)[0]
    except ValueError:
        return []
    if major < 3 or target_machine is None or target_machine == machine_id:
        return []
    return [(
        f"{name}'s dqlite node belongs to controller machine {target_machine}; the backup is of machine "
        f"{machine_id}: the restored controller's dbaccessor would find no dqlite record of its own",
        f"restore a backup taken on machine {target_machine} (on HA, create it there), or bootstrap a "
        "controller whose machine id matches the backup's",
    )]


def bootstrapped_line(
    name: str, controller_uuid: str | None, machine_id: str | None, backup_controller: str, juju_version: str
) -> str:
    """Given a freshly bootstrapped target's name, controller UUID and machine id, and the backup's
    controller UUID and Juju version, return the plan's line on what the restore does to it."""
    try:
        juju3 = version_tuple(juju_version)[0] >= 3
    except ValueError:
        juju3 = False
    kept = "its dqlite node" if juju3 else "its raft state"
    return (
        f"{name} is a freshly bootstrapped controller (controller {controller_uuid}, "
        f"machine {machine_id}, only its controller model): its services are stopped and its "
        f"state (database, agent.conf, CA, controller UUID, juju-db and jujud units) is replaced by the "
        f"backup's (controller {backup_controller}); {kept} stays"
    )
