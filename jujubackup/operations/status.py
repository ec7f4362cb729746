"""status: what jujubackup sees on a controller host (one read-only probe script + the pure parser).

The connect helpers every verb shares live in operations/connecting.py and operations/catalogs.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jujubackup import profiles
from jujubackup.connect import connect_each
from jujubackup.errors import ConnectError, JujuBackupError
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Connector
from jujubackup.operations.connecting import check_backup_dir, connect_controller, probe
from jujubackup.ui import UI, human_bytes


@dataclass(frozen=True)
class StatusResult:
    """What status found: the (first) controller's facts; with several, each of them (`members`)."""

    facts: ControllerFacts
    members: tuple[Member, ...] = ()

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
            "shell-version": f.shell_version or "?",
            "mongo-tls": _tls_summary(f),
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


@dataclass(frozen=True)
class Member:
    """One controller of a `status` of several: its facts, or why it could not be probed."""

    host: str
    facts: ControllerFacts | None = None
    error: str = ""

    def row(self) -> dict[str, Any]:
        """Return its line in the table of the HA set."""
        f = self.facts
        if f is None:
            return {"host": self.host, "health": f"not probed: {self.error}"}
        me = next((m for m in f.replset if m.is_self), None)
        reasons = f.unhealthy_reasons(profiles.profile_named(f.profile))
        return {"host": self.host, "machine": f.machine_id, "profile": f.profile, "juju": f.juju_version,
                "member": me.state if me else (f.replset_error or "unknown"), "primary": f.primary or "-",
                "health": "; ".join(reasons) or "healthy"}

    def to_dict(self) -> dict[str, Any]:
        """Return it as plain data (json/yaml): the facts, or the error."""
        return {"controller": self.host, **(self.facts.to_dict() if self.facts else {"error": self.error})}


def status(connector: Connector, ui: UI, backup_dir: str = profiles.DEFAULT_BACKUP_DIR) -> StatusResult:
    """Probe the connector's controller (the first host that answers, healthy or not) and return
    what it found; with several controllers, probe each (StatusResult.members, in order) and give
    the details of the first that answered. Raise ConnectError (exit 3) when none answers."""
    if len(connector.targets()) > 1:
        return _status_of_several(connector, ui, backup_dir)
    host, facts = connect_controller(connector, ui, backup_dir, require_healthy=False)
    try:
        _warn_about(facts, ui)
        return StatusResult(facts)
    finally:
        host.close()


def _status_of_several(connector: Connector, ui: UI, backup_dir: str) -> StatusResult:
    """status with several controllers: every one probed (a changed host key still aborts)."""
    check_backup_dir(backup_dir)
    members: list[Member] = []
    for target, host, error in connect_each(connector.targets(), ui, connector):
        if host is None:
            members.append(Member(target.display, error=error.message if error else "no connection"))
            continue
        try:
            members.append(Member(target.display, facts=probe(host, backup_dir)))
        except JujuBackupError as err:
            members.append(Member(target.display, error=err.message))
        finally:
            host.close()
    probed = [m.facts for m in members if m.facts is not None]
    if not probed:
        raise ConnectError(f"none of the {len(members)} controllers could be probed ("
                           + "; ".join(f"{m.host}: {m.error}" for m in members) + ")",
                           hint="check each with `jujubackup -H HOST status`")
    for facts in probed:
        _warn_about(facts, ui)
    return StatusResult(probed[0], tuple(members))


def _warn_about(facts: ControllerFacts, ui: UI) -> None:
    """Warn about what is wrong with a controller: unhealthy, an unfinished restore, no jujud unit."""
    profile = profiles.profile_named(facts.profile)
    for reason in facts.unhealthy_reasons(profile):
        ui.warn(f"{facts.host}: {reason}")
    if facts.restore_journal:
        ui.warn(f"unfinished restore on {facts.host}: run restore --resume or --rollback first")
    jujud = profile.jujud_service(facts.machine_id)
    if facts.missing_unit(jujud):
        ui.warn(f"unit {jujud}.service not found on {facts.host}")


def _tls_summary(f: ControllerFacts) -> str:
    """Given the facts, return how the tools and the shell talk TLS to juju-db here (one line)."""
    if f.mongo_tls is None:
        return "?"
    return f"tools: {' '.join(f.mongo_tls.tools)}; shell: {' '.join(f.mongo_tls.shell)}"
