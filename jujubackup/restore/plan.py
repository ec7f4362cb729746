"""PURE restore planning: what the backup holds + what the target is + options -> ordered steps.

No I/O here. `restore/gather.py` gathers the facts (archive inspection on the workstation, the
target's probe, old controllers probed *from the target*) and hands them to `make_plan`, which either
returns a `Plan` (the steps `restore/execute.py` runs, plus what will change, for the operator to read)
or raises a typed `RefusedError` (exit 6) with a hint, and `--force` where overriding makes sense.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from jujubackup.errors import RefusedError
from jujubackup.restore import leftovers
from jujubackup.restore.leftovers import version_tuple

# Step names, in execution order. They are the journal keys on the target (restore/execute.py).
UPLOAD = "upload"
STOP = "stop-services"
SNAPSHOT = "snapshot"
UNTAR = "untar-files"
INSTALL = "install-services"
FRESH_DB = "fresh-db"
LOAD_DB = "load-db"
REPLAY_ROLE = "jujubackup-oplog-replay"
"""The role load-db creates for mongorestore --oplogReplay (remote_scripts/restore-load-db.sh.j2)."""
START = "start-services"
VERIFY = "verify"
CLEANUP = "cleanup"

STEP_ORDER: tuple[str, ...] = (
    UPLOAD, STOP, SNAPSHOT, UNTAR, INSTALL, FRESH_DB, LOAD_DB, START, VERIFY, CLEANUP,
)

UBUNTU_KEYS = "/home/ubuntu/.ssh/authorized_keys"
"""The one file root.tar may hold outside Juju's state dirs; the untar step merges, never locks out."""

DISK_MARGIN = 1.1
"""Free space needed = this factor times the bytes the restore writes on the target."""


class Mode(str, Enum):
    """Which verb form: back onto the same controller, onto another host, or disaster recovery."""

    same = "same-controller"
    move = "to-target"
    dr = "disaster-recovery"


@dataclass(frozen=True)
class ControllerMachine:
    """A controller machine named in the backup (from the dump's machines and agent.conf)."""

    machine_id: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class BackupFacts:
    """What the plan needs to know about the backup (read on the workstation from the archive)."""

    backup_id: str
    controller_uuid: str
    model_uuid: str
    machine_id: str
    juju_version: str
    series: str
    mongo_version: str | None
    archive_size: int
    unpacked_size: int
    state_port: int = 37017
    api_port: int = 17070
    controllers: tuple[ControllerMachine, ...] = ()
    has_oplog: bool = False
    ubuntu_keys: int | None = None
    """Keys in root.tar's /home/ubuntu/.ssh/authorized_keys (None: root.tar has no such file)."""
    ca_cert: str = ""
    """The controller CA (agent.conf `cacert`, PEM): the restored API's certificate must chain to it."""

    @property
    def restored(self) -> ControllerMachine | None:
        """The controller machine this backup was taken on, if the dump names it."""
        return next((c for c in self.controllers if c.machine_id == self.machine_id), None)

    @property
    def others(self) -> tuple[ControllerMachine, ...]:
        """Controller machines other than the backed-up one: they are demoted by the restore."""
        return tuple(c for c in self.controllers if c.machine_id != self.machine_id)


@dataclass(frozen=True)
class TargetFacts:
    """What the plan needs to know about the target host (from its probe over SSH)."""

    name: str
    address: str
    profile: str | None
    juju_version: str | None = None
    controller_uuid: str | None = None
    machine_id: str | None = None
    mongo_version: str | None = None
    shell_version: str = ""
    """The target's mongo shell `--version` as the probe read it (X.Y.Z; '' unknown)."""
    tools_version: str = ""
    """The target's mongo-tools version (mongodump's `--version`, X.Y.Z; '' unknown)."""
    live_services: tuple[str, ...] = ()
    has_state: bool = False
    free_bytes: int = 0
    state_bytes: int = 0
    addresses: tuple[str, ...] = ()
    raft_state: bool = False
    """The target has 2.x raft state under /var/lib/juju/raft (not in any backup: it stays)."""
    raft_machines: tuple[str, ...] = ()
    """The machine tags that raft state names (its servers)."""
    dqlite_node: bool = False
    """The target has a 3.x dqlite node: /var/lib/juju/dqlite holds something (never in a backup)."""
    dqlite_servers: int = 0
    """How many nodes the target's dqlite cluster.yaml lists."""
    models: tuple[str, ...] | None = None
    """The target controller's models (names, from its juju.models), None when not read."""
    model_uuid: str | None = None
    """The target controller's controller model (its agent.conf `model`)."""

    @property
    def live_controller(self) -> bool:
        """True when juju-db or a jujud machine agent runs on the target."""
        return bool(self.live_services)

    def freshly_bootstrapped(self, backup_controller: str) -> bool:
        """True when the target is a controller of another controller than `backup_controller` that
        holds nothing but its controller model (as `juju bootstrap` leaves one): its state can go."""
        return (
            self.controller_uuid is not None
            and self.controller_uuid != backup_controller
            and self.models == ("controller",)
        )


@dataclass(frozen=True)
class PeerProbe:
    """One old controller address:port probed from the target; `answers` if a TCP connect succeeded."""

    address: str
    port: int
    answers: bool


@dataclass(frozen=True)
class RestoreOptions:
    """The operator's choices that change the plan."""

    mode: Mode
    force: bool = False
    allow_downgrade: bool = False
    readdress: bool = True


HARVEST_DEFAULT = "destroyed"
"""Juju's default provisioner-harvest-mode (juju/juju environs/config/config.go HarvestDestroyed)."""


@dataclass(frozen=True)
class HarvestMode:
    """One model whose provisioner-harvest-mode the restore sets to "none": its UUID, its name and
    the value it had (None: unset, Juju's default applies)."""

    model_uuid: str
    model: str
    was: str | None

    def restore_command(self) -> str:
        """Return the juju command that gives the model its earlier harvest mode back (quoted: the
        name and value come from the archive)."""
        model = shlex.quote(self.model or self.model_uuid)
        if self.was is None:
            return f"juju model-config -m {model} --reset provisioner-harvest-mode"
        return f"juju model-config -m {model} provisioner-harvest-mode={shlex.quote(self.was)}"

    def as_dict(self) -> dict[str, object]:
        """Return plain data for --format json/yaml and the journal."""
        return {
            "model": self.model,
            "model-uuid": self.model_uuid,
            "was": self.was if self.was is not None else f"(unset: default {HARVEST_DEFAULT})",
            "now": "none",
            "turn-back": self.restore_command(),
        }


@dataclass(frozen=True)
class Step:
    """One journaled step: its name (journal key), a title and the lines that say what it does."""

    name: str
    title: str
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """An ordered restore, ready to show and execute."""

    mode: Mode
    backup_id: str
    target: str
    machine_id: str
    old_addresses: tuple[str, ...]
    new_address: str
    steps: tuple[Step, ...]
    changes: tuple[str, ...] = ()
    demoted: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    snapshot: bool = False
    install_services: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    harvest: tuple[HarvestMode, ...] = ()
    target_kind: str = ""
    """What the target is when that changes what the restore does (a freshly bootstrapped controller)."""

    def step_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    def as_dict(self) -> dict[str, object]:
        """Return plain data for --format json/yaml and for the journal on the target."""
        return {
            "mode": self.mode.value,
            "backup": self.backup_id,
            "target": self.target,
            "machine": self.machine_id,
            "old-addresses": list(self.old_addresses),
            "new-address": self.new_address,
            "demoted": list(self.demoted),
            "changes": list(self.changes),
            "warnings": list(self.warnings),
            "harvest-mode": [h.as_dict() for h in self.harvest],
            "target-kind": self.target_kind,
            "steps": [{"name": s.name, "title": s.title, "details": list(s.details)} for s in self.steps],
        }


def make_plan(
    backup: BackupFacts,
    target: TargetFacts,
    options: RestoreOptions,
    *,
    peers: Sequence[PeerProbe] = (),
    changes: Sequence[str] = (),
    harvest: Sequence[HarvestMode] = (),
    check: bool = True,
) -> Plan:
    """Given the backup's facts, the target's facts, the old controllers probed from the target, the
    re-addressing change list (rewrite.py) and the options, return the ordered Plan.

    Raise RefusedError (exit 6) if a precondition fails; with `options.force` the forceable ones
    become warnings instead. With `check=False` (a dry run showing everything) refusals never raise:
    they are listed in the plan's warnings as "refused: ..." (call check_preconditions afterwards).
    """
    if check:
        warnings = check_preconditions(backup, target, options, peers)
    else:
        hard, soft = refusals(backup, target, options, peers)
        warnings = [f"refused: {m} (hint: {h})" for m, h in (*hard, *soft)] + _notes(backup, target)
    snapshot = target.has_state
    install = options.mode is not Mode.same and not _has_units(target, backup)
    steps = _steps(backup, target, options, snapshot=snapshot, install=install)
    return Plan(
        mode=options.mode,
        backup_id=backup.backup_id,
        target=target.name,
        machine_id=backup.machine_id,
        old_addresses=backup.restored.addresses if backup.restored else (),
        new_address=target.address,
        steps=steps,
        changes=tuple(changes) if options.readdress else (),
        demoted=tuple(_describe(c) for c in backup.others),
        warnings=tuple(warnings),
        snapshot=snapshot,
        install_services=install,
        harvest=tuple(harvest) if options.readdress else (),
        target_kind=_target_kind(backup, target),
    )


def _target_kind(backup: BackupFacts, target: TargetFacts) -> str:
    if not target.freshly_bootstrapped(backup.controller_uuid):
        return ""
    return leftovers.bootstrapped_line(
        target.name, target.controller_uuid, target.machine_id, backup.controller_uuid, backup.juju_version
    )


def check_preconditions(
    backup: BackupFacts, target: TargetFacts, options: RestoreOptions, peers: Sequence[PeerProbe]
) -> list[str]:
    """Given the facts, return warnings for overridden or harmless findings.

    Raise RefusedError for the first refusal that `options.force` does not override (the
    non-forceable ones first: no mongo on the target, a downgrade without --allow-downgrade).
    """
    hard, soft = refusals(backup, target, options, peers)
    if hard:
        message, hint = hard[0]
        raise RefusedError(message, hint)
    if soft and not options.force:
        message, hint = soft[0]
        more = f" (and {len(soft) - 1} more refusal(s))" if len(soft) > 1 else ""
        raise RefusedError(message + more, f"{hint}; or override with --force")
    return [f"overridden by --force: {m}" for m, _ in soft] + _notes(backup, target)


def refusals(
    backup: BackupFacts, target: TargetFacts, options: RestoreOptions, peers: Sequence[PeerProbe]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Given the facts, return (hard, soft) refusals as (message, hint); soft ones yield to --force."""
    hard: list[tuple[str, str]] = []
    soft: list[tuple[str, str]] = []
    if target.profile is None:
        hard.append((
            f"{target.name} has no mongo tools of a known Juju profile (juju-db snap or juju-mongodb)",
            "install the juju-db snap (Juju 2.9+) or juju-mongodb3.2 (Juju 2.8) on the target first",
        ))
    hard.extend(_version_refusals(backup, target, options))
    hard.extend(
        leftovers.raft_refusals(target.name, backup.machine_id, target.raft_state, target.raft_machines)
    )
    hard.extend(leftovers.dqlite_refusals(target.name, backup.juju_version, target.dqlite_node))
    soft.extend(_live_peer_refusals(peers))
    soft.extend(_mongo_refusals(backup, target))
    soft.extend(_uuid_refusals(backup, target))
    if target.freshly_bootstrapped(backup.controller_uuid):
        soft.extend(leftovers.dqlite_machine_refusals(
            target.name, backup.juju_version, target.machine_id, backup.machine_id))
    soft.extend(_disk_refusals(backup, target))
    return hard, soft


def required_bytes(backup: BackupFacts, target: TargetFacts) -> int:
    """Given the facts, return the bytes the restore needs free on the target's staging filesystem:
    the archive, its unpacked members, the restored DB and files, and a snapshot of the current state."""
    return int((backup.archive_size + 2 * backup.unpacked_size + target.state_bytes) * DISK_MARGIN)


def _version_refusals(
    backup: BackupFacts, target: TargetFacts, options: RestoreOptions
) -> list[tuple[str, str]]:
    if not target.juju_version:
        return []
    ours, theirs = version_tuple(backup.juju_version), version_tuple(target.juju_version)
    if ours > theirs:
        return [(
            f"the backup's Juju {backup.juju_version} is newer than {target.name}'s "
            f"Juju {target.juju_version}",
            f"upgrade {target.name} to Juju {backup.juju_version} first, or restore onto a fresh machine",
        )]
    if ours < theirs and not options.allow_downgrade:
        return [(
            f"the backup's Juju {backup.juju_version} is older than {target.name}'s "
            f"Juju {target.juju_version}",
            "pass --allow-downgrade to restore the older agent version (the archive's tools are used)",
        )]
    return []


def _mongo_refusals(backup: BackupFacts, target: TargetFacts) -> list[tuple[str, str]]:
    if not backup.mongo_version or not target.mongo_version:
        return []
    if version_tuple(backup.mongo_version)[:2] == version_tuple(target.mongo_version)[:2]:
        return []
    return [(
        f"the backup's mongo {backup.mongo_version} and {target.name}'s mongo {target.mongo_version} "
        "are not the same major.minor",
        f"restore onto a machine with mongo {'.'.join(map(str, version_tuple(backup.mongo_version)[:2]))}",
    )]


def _uuid_refusals(backup: BackupFacts, target: TargetFacts) -> list[tuple[str, str]]:
    if not (target.live_controller and target.controller_uuid):
        return []
    if target.controller_uuid == backup.controller_uuid:
        return []
    if target.freshly_bootstrapped(backup.controller_uuid):
        return []
    models = (
        f" with {len(target.models)} models ({', '.join(target.models[:5])})" if target.models else ""
    )
    return [(
        f"{target.name} is a live controller of another controller ({target.controller_uuid}){models}; "
        f"the backup is of controller {backup.controller_uuid}",
        "check the target host; restoring replaces that controller's state (a freshly bootstrapped "
        "controller, holding only its controller model, is restored over without --force)",
    )]


def _live_peer_refusals(peers: Sequence[PeerProbe]) -> list[tuple[str, str]]:
    live = sorted({f"{p.address}:{p.port}" for p in peers if p.answers})
    if not live:
        return []
    return [(
        "controller(s) named in the backup still answer: " + ", ".join(live) + " — restoring now "
        "takes them offline and can cripple the environment",
        "shut the old controllers down (or remove them from the network) before a disaster-recovery "
        "restore",
    )]


def _disk_refusals(backup: BackupFacts, target: TargetFacts) -> list[tuple[str, str]]:
    need = required_bytes(backup, target)
    if target.free_bytes >= need:
        return []
    return [(
        f"not enough disk on {target.name}: {_mib(target.free_bytes)} free, {_mib(need)} needed",
        "free space on the target's /var (old backups, logs) or use a bigger machine",
    )]


def _notes(backup: BackupFacts, target: TargetFacts) -> list[str]:
    notes = []
    if not backup.mongo_version:
        notes.append("the backup does not record its mongo version; compatibility not checked")
    if backup.controllers and backup.restored is None:
        notes.append(f"the dump has no machines document for machine {backup.machine_id}")
    return notes


def _has_units(target: TargetFacts, backup: BackupFacts) -> bool:
    """True when the target runs the backup's own controller machine already (its units fit: a
    controller of another controller gets the backup's units, juju-db.config and CA)."""
    return (
        target.machine_id == backup.machine_id
        and target.juju_version is not None
        and target.controller_uuid in (None, backup.controller_uuid)
    )


def count_keys(text: str) -> int:
    """Given authorized_keys text, return how many keys it holds (not blank or comment lines)."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def _keys_lines(backup: BackupFacts, target: TargetFacts) -> tuple[str, ...]:
    if backup.ubuntu_keys is None:
        return ()
    return (
        f"will replace {UBUNTU_KEYS} on {target.name} with the backup's ({backup.ubuntu_keys} keys) — "
        f"{target.name}'s current keys are merged in and kept, so nobody is locked out",
    )


def _describe(machine: ControllerMachine) -> str:
    where = ", ".join(machine.addresses) or "no address"
    return (
        f"machine {machine.machine_id} ({where}): demoted (no controller job; its controllerNodes "
        "document removed, so no vote)"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _steps(
    backup: BackupFacts, target: TargetFacts, options: RestoreOptions, *, snapshot: bool, install: bool
) -> tuple[Step, ...]:
    mid, new = backup.machine_id, target.address
    old = ", ".join(backup.restored.addresses) if backup.restored else "unknown"
    services = ", ".join(target.live_services) or "none running"
    pushed = "re-addressed archive" if options.readdress else "archive (NOT re-addressed)"
    all_steps = {
        UPLOAD: Step(UPLOAD, f"push the {pushed} to {target.name}",
                     (f"{_mib(backup.archive_size)}, resumable, SHA-256 checked on the target",)),
        STOP: Step(STOP, "stop juju-db and jujud-machine-* (recorded; restarted on every exit path)",
                   (f"running now: {services}",)),
        SNAPSHOT: Step(SNAPSHOT, "snapshot the current state for --rollback",
                       ("/var/lib/juju, the juju-db data dir and the systemd units",)),
        UNTAR: Step(UNTAR, "untar root.tar onto / (safe members only; modes, owners, tools symlink kept)",
                    (f"agents/machine-{mid}/agent.conf apiaddresses -> {new}:{backup.api_port}",
                     *_keys_lines(backup, target))),
        INSTALL: Step(INSTALL, f"install juju-db ({target.profile}) and jujud-machine-{mid} units",
                      ("tools from the archive's /var/lib/juju/tools",)),
        FRESH_DB: Step(FRESH_DB, f"start a fresh juju-db; replica set 'juju' = {new}:{backup.state_port} "
                       f"tagged juju-machine-id={mid}",
                       (f"user machine-{mid} from the archive's agent.conf",
                        *((f"role {REPLAY_ROLE} for load-db's oplog replay, granted to machine-{mid}",)
                          if backup.has_oplog else ()))),
        LOAD_DB: Step(LOAD_DB, "mongorestore --drop" + (" --oplogReplay" if backup.has_oplog else "")
                      + " of the re-addressed dump", (f"controller address {old} -> {new}",
                      *((f"role {REPLAY_ROLE} held by machine-{mid} for the replay, dropped after it",)
                        if backup.has_oplog else ()))),
        START: Step(START, f"start juju-db and jujud-machine-{mid}", ()),
        VERIFY: Step(VERIFY, "verify: services active, the API's certificate chains to the backup's CA, "
                     f"replica set = {new}:{backup.state_port} alone with machine {mid} the only voter, "
                     "new address in the DB", ()),
        CLEANUP: Step(CLEANUP, "remove the staging files on the target", ()),
    }
    skip = set()
    if not snapshot:
        skip.add(SNAPSHOT)
    if not install:
        skip.add(INSTALL)
    return tuple(all_steps[name] for name in STEP_ORDER if name not in skip)
