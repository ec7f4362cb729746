"""The overlay stage of a restore onto a new address: rewrite.py's re-addressing of the archive's
agent.conf and dump collections, written locally as a small overlay unpacked over the archive on the
target (no recompression of the big unchanged members), and what the upload step pushes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jujubackup import rewrite
from jujubackup.restore import plan as P
from jujubackup.restore.gather import Checked
from jujubackup.restore.target import TargetProbe, choose_instance_id


@dataclass(frozen=True)
class Prepared:
    """What gets pushed: the original archive and, when re-addressed, a small overlay of the rewritten
    members (unpacked over it on the target), their digests, and the change lines for the plan."""

    archive: Path
    sha256: str
    size: int
    overlay: Path | None = None
    overlay_sha256: str = ""
    overlay_size: int = 0
    changes: tuple[str, ...] = ()
    harvest: tuple[P.HarvestMode, ...] = ()


@dataclass(frozen=True)
class Overlay:
    """rewrite.py's re-addressing overlay written locally, its digests and the plan's change lines."""

    path: Path
    sha256: str
    size: int
    changes: tuple[str, ...]
    harvest: tuple[P.HarvestMode, ...] = ()


def prepare_overlay(
    local: Path, backup: P.BackupFacts, target: TargetProbe, instance_id: str | None, work: Path
) -> Overlay:
    """Write the re-addressing overlay of `local` for `target` into `work` (only the rewritten members:
    no recompression of the big unchanged ones); return it with the change lines for the plan."""
    out = work / "readdress-overlay.tar.gz"
    instance, source = choose_instance_id(instance_id, target)
    result = rewrite.readdress_archive(
        str(local),
        str(out),
        rewrite.ReaddressTarget(backup.machine_id, target.address, instance, backup.model_uuid),
        tmp_dir=str(work),
        overlay=True,
    )
    lines = [c.describe() for c in result.changes if c.collection != "agent.conf"]
    diff = [f"  {line}" for line in result.agent_conf_diff.splitlines()]
    changes = (f"instance id {instance} (from {source})", *lines, *(["agent.conf:", *diff] if diff else []))
    harvest = tuple(
        P.HarvestMode(str(c.doc_id).removesuffix(":e"), c.label, c.old if isinstance(c.old, str) else None)
        for c in rewrite.harvest_changes(result.changes)
    )
    if rewrite.SETTINGS in result.missing:
        changes = (
            *changes,
            "juju.settings: not in this dump - no model's provisioner-harvest-mode can be set to none "
            "(each model keeps harvesting as it was configured)",
        )
    return Overlay(out, result.digest.sha256, result.digest.size, changes, harvest)


def prepared(local: Path, checked: Checked, overlay: Overlay | None) -> Prepared:
    """Given the verified archive and its optional overlay, return what the upload step pushes."""
    sha, size = checked.sha256, checked.size
    if overlay is None:
        return Prepared(local, sha, size)
    return Prepared(
        local, sha, size, overlay.path, overlay.sha256, overlay.size, overlay.changes, overlay.harvest
    )
