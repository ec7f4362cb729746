"""What the operator asked of `restore` (built once by the CLI) and what the verb reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jujubackup import profiles
from jujubackup.operations.repoint import RepointRequest, RepointResult
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P

Confirm = Callable[[str], bool]
"""Asks the operator a yes/no question; True when confirmed."""


@dataclass(frozen=True)
class RestoreRequest:
    """What the operator asked for (built once by the CLI)."""

    backup_ref: str | None = None
    archive: Path | None = None
    target: str | None = None
    address: str | None = None
    instance_id: str | None = None
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    allow_downgrade: bool = False
    resume: bool = False
    rollback: bool = False
    update_client_config: bool = False
    work_dir: Path | None = None
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR
    repoint: RepointRequest | None = field(default_factory=RepointRequest)  # None: --no-repoint


@dataclass
class RestoreResult:
    """What the verb reports: the plan, what ran, the verification and the next steps."""

    plan: P.Plan | None = None
    outcome: X.Outcome | None = None
    next_steps: tuple[str, ...] = ()
    rolled_back: dict[str, Any] | None = None
    dry_run: bool = False
    repointed: RepointResult | None = None
    harvest: tuple[P.HarvestMode, ...] = ()

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.plan:
            data["plan"] = self.plan.as_dict()
        if self.outcome:
            data["ran"] = self.outcome.ran
            data["skipped"] = self.outcome.skipped
            data["verify"] = self.outcome.verify
            data["seconds"] = self.outcome.seconds
        if self.rolled_back is not None:
            data["rolled-back"] = self.rolled_back
        if self.repointed is not None:
            data["repoint"] = self.repointed.as_data()
        if self.harvest or (self.plan and self.plan.harvest):
            data["harvest-mode"] = [h.as_dict() for h in (self.harvest or self.plan.harvest)]  # type: ignore[union-attr]
        data["next-steps"] = list(self.next_steps)
        data["dry-run"] = self.dry_run
        return data
