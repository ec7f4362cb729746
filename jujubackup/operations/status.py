"""status: what jujubackup sees on a controller host (one read-only probe script + the pure parser).

The connect helpers every verb shares moved to operations/connecting.py (probe, connect_controller,
refuse_if_locked, check_backup_dir) and operations/catalogs.py (connect_catalog, resolve_across);
they are re-exported here for modules not moved over yet, as is ui.human_bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jujubackup import profiles
from jujubackup.connect import ConnectWith
from jujubackup.facts import ControllerFacts
from jujubackup.operations.catalogs import connect_catalog, resolve_across
from jujubackup.operations.connecting import check_backup_dir, connect_controller, probe, refuse_if_locked
from jujubackup.ui import UI, human_bytes

__all__ = [
    "StatusResult", "check_backup_dir", "connect_catalog", "connect_controller", "human_bytes", "probe",
    "refuse_if_locked", "resolve_across", "status",
]


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


def status(via: ConnectWith, ui: UI, backup_dir: str = profiles.DEFAULT_BACKUP_DIR) -> StatusResult:
    """Connect to the first host that answers (healthy or not) and return what the probe found."""
    host, facts = connect_controller(via, ui, backup_dir, require_healthy=False)
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


def _tls_summary(f: ControllerFacts) -> str:
    """Given the facts, return how the tools and the shell talk TLS to juju-db here (one line)."""
    if f.mongo_tls is None:
        return "?"
    return f"tools: {' '.join(f.mongo_tls.tools)}; shell: {' '.join(f.mongo_tls.shell)}"
