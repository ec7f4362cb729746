"""status: what jujubackup sees on a controller host (one read-only probe script + the pure parser).

Also home of the probe step the other verbs share: `probe(host)` and `connect_controller(...)`, which
picks the first of several hosts that answers and is a healthy controller (the HA case), and
`connect_catalog(...)` for the verbs that only use the catalog.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jujubackup import facts as facts_mod
from jujubackup import profiles, scripts
from jujubackup.catalog import Catalog, describe_holder
from jujubackup.connect import connect_first, resolve_targets
from jujubackup.errors import LockedError, RefusedError, UsageError
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Host
from jujubackup.metadata import is_backup_id, resolve_id
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI


def probe(host: Host, backup_dir: str = profiles.DEFAULT_BACKUP_DIR) -> ControllerFacts:
    """Given a connected host, run the read-only probe and return its ControllerFacts.

    Raise RefusedError (exit 6) for an upstart/1.x controller or a host with no known Juju layout,
    RemoteStepError (exit 4) if the probe script fails.
    """
    text = scripts.render(
        "probe",
        backup_dir=backup_dir,
        restore_journal_dir=profiles.RESTORE_JOURNAL_DIR,
        paths=profiles.probe_paths(),
        profiles=profiles.PROFILES,
        estimate_dbs=facts_mod.ESTIMATE_DBS,
    )
    doc = host.run("probe", text, timeout=180).json()
    return facts_mod.parse_probe(doc, host.name)


def connect_controller(
    settings: ConnectionSettings,
    ui: UI,
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR,
    *,
    require_healthy: bool = True,
    refuse_unfinished_restore: bool = False,
    refuse_locked: bool = False,
) -> tuple[Host, ControllerFacts]:
    """Connect to the first of the settings' hosts that answers and is a (healthy) controller.

    Return the host and its facts. Raise UsageError (exit 2) for a relative backup dir (before
    connecting), ConnectError (exit 3) when none qualifies (each reason listed), or the single host's
    own error (e.g. RefusedError for a 1.x controller; with `refuse_unfinished_restore`, for a host
    whose restore journal says a restore is unfinished; with `refuse_locked`, LockedError (exit 7)
    when another operation holds the controller's lock - checked before health, as a running
    `create --mode stop` has juju-db stopped).
    """
    check_backup_dir(backup_dir)
    found: dict[str, ControllerFacts] = {}

    def accept(host: Host) -> bool:
        facts = probe(host, backup_dir)
        if refuse_unfinished_restore and facts.restore_journal:
            raise RefusedError(
                f"unfinished restore on {host.name}: run restore --resume or --rollback first",
                hint=facts.unfinished_restore(),
            )
        if refuse_locked:
            refuse_if_locked(facts, host.name)
        if require_healthy:
            reasons = facts.unhealthy_reasons(profiles.profile_named(facts.profile))
            if reasons:
                raise RefusedError(
                    f"{host.name} is not a healthy controller: {'; '.join(reasons)}",
                    hint="start juju-db, or give another controller with -H (repeat -H for HA)",
                )
        found["facts"] = facts
        return True

    host = connect_first(settings, ui, accept=accept)
    return host, found["facts"]


def refuse_if_locked(facts: ControllerFacts, name: str) -> None:
    """Given a host's facts, return if no jujubackup operation holds its controller's lock. Raise
    LockedError (exit 7) naming the holder otherwise."""
    if facts.lock_holder is None:
        return
    who = describe_holder(facts.lock_holder) if facts.lock_holder else "no holder record"
    raise LockedError(
        f"the controller's backup dir on {name} is locked: {who}",
        hint="wait for that operation to finish; the lock (flock) frees itself when its holder exits",
    )


def connect_catalog(
    settings: ConnectionSettings,
    ui: UI,
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR,
    *,
    holding: Sequence[str] = (),
) -> Host:
    """Connect for a verb that only reads or changes the catalog (no controller probe: it needs no
    facts): the first of the settings' hosts that answers and, with `holding` (backup IDs, prefixes
    or `latest`), whose catalog resolves all of them - each HA controller keeps its own catalog, so
    a backup made on one is found there. With several controllers, prefixes and `latest` are first
    resolved against all their catalogs merged (resolve_across).

    Raise UsageError (exit 2) for a relative backup dir, NotFoundError (exit 5) when the hosts
    answer but none holds them, ConnectError (exit 3) otherwise (each reason listed).
    """
    check_backup_dir(backup_dir)
    if len(resolve_targets(settings)) > 1 and not all(is_backup_id(ref) for ref in holding):
        holding = resolve_across(settings, ui, backup_dir, holding)

    def accept(host: Host) -> bool:
        if holding:
            Catalog(host, backup_dir).resolve(holding)  # NotFoundError: not this controller
        return True

    return connect_first(settings, ui, accept=accept)


def resolve_across(
    settings: ConnectionSettings, ui: UI, backup_dir: str, refs: Sequence[str]
) -> list[str]:
    """Given prefixes or `latest`, return the exact IDs they name in the merged catalogs of all the
    settings' controllers (`latest` is the newest of all, not of the first that has any).
    Raise NotFoundError (exit 5) for a ref that names nothing or is ambiguous there."""
    from jujubackup.operations.list import list_backups  # list builds on connect_catalog

    known = [r.id for r in list_backups(settings, ui, backup_dir).records]
    return [resolve_id(known, ref) for ref in refs]


def check_backup_dir(backup_dir: str) -> None:
    """Given a --backup-dir, return if it can be a dedicated backup dir as far as the workstation can
    tell. Raise UsageError (exit 2) for a relative path, a control character, or a path that is (after
    normalising `.`, `..` and repeated slashes) a system dir or lies under a pseudo filesystem: the
    lock chmods the dir 0700 and create/upload delete staging names in it. The host checks the rest
    (its realpath, and that an existing dir holds only what jujubackup made: exit 6).
    """
    hint = f"give --backup-dir as a dedicated /path/on/the/controller (default {profiles.DEFAULT_BACKUP_DIR})"
    if not backup_dir.startswith("/"):
        raise UsageError(f"backup dir must be an absolute path: {backup_dir!r}", hint=hint)
    if any(ord(c) < 32 or ord(c) == 127 for c in backup_dir):
        raise UsageError(f"backup dir holds a control character: {backup_dir!r}", hint=hint)
    normal = "/" + posixpath.normpath(backup_dir).lstrip("/")
    under = [d for d in profiles.PSEUDO_FS_DIRS if normal.startswith(d + "/")]
    if normal in profiles.SYSTEM_DIRS or under:
        raise UsageError(
            f"backup dir {backup_dir} is a system dir" + (f" (under {under[0]})" if under else ""),
            hint=hint + "; jujubackup chmods it 0700 and removes its staging files there",
        )


@dataclass(frozen=True)
class StatusResult:
    facts: ControllerFacts

    def summary(self) -> dict[str, Any]:
        """Return the tabular view: one line per fact."""
        f = self.facts
        services = [f"{s.name}={s.active_state}({s.sub_state}, pid {s.main_pid})" for s in f.services]
        members = [
            f"{m.name}{' (self)' if m.is_self else ''} {m.state} health={m.health} machine={m.machine_id}"
            for m in f.replset
        ]
        return {
            "host": f.host,
            "hostname": f.hostname,
            "profile": f.profile,
            "machine": f"{f.machine_id} ({f.tag})",
            "juju-version": f.juju_version,
            "series": f.series,
            "base": f.base,
            "controller-uuid": f.controller_uuid,
            "model-uuid": f.model_uuid,
            "instance-id": f.instance_id,
            "state-port": f.state_port,
            "mongo-version": f.mongo_version or "?",
            "tools-version": f.tools_version or "?",
            "tools": [f"{k}={v}" for k, v in f.tools.items()],
            "services": services,
            "replica-set": members or [f.replset_error or "unknown"],
            "primary": f.primary or "-",
            "ha-nodes": f.ha_nodes,
            "backup-dir": f.backup_dir,
            "free": human_bytes(f.free_bytes),
            "dump-estimate": human_bytes(f.estimate_bytes),
            "pigz": f.pigz,
            "restore": f.unfinished_restore() or "none unfinished",
        }


def status(
    settings: ConnectionSettings, ui: UI, backup_dir: str = profiles.DEFAULT_BACKUP_DIR
) -> StatusResult:
    """Connect to the first host that answers (healthy or not) and return what the probe found."""
    host, facts = connect_controller(settings, ui, backup_dir, require_healthy=False)
    try:
        profile = profiles.profile_named(facts.profile)
        for reason in facts.unhealthy_reasons(profile):
            ui.warn(f"{facts.host}: {reason}")
        if facts.restore_journal:
            ui.warn(f"unfinished restore on {facts.host}: run restore --resume or --rollback first")
        jujud = profile.jujud_service(facts.machine_id)
        if facts.missing_unit(jujud):
            ui.warn(f"unit {jujud}.service not found on {facts.host}")
        return StatusResult(facts)
    finally:
        host.close()


def human_bytes(n: int) -> str:
    """Given a byte count, return it with a binary unit (`1.5 GiB`)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
