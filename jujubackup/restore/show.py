"""What a restore shows the operator: the plan (and the refusal a dry run stands for) and the next
steps once it ran. No I/O but the UI."""

from __future__ import annotations

from jujubackup.errors import RefusedError
from jujubackup.restore import plan as P
from jujubackup.ui import UI


def dry_run_refusal(
    backup: P.BackupFacts, target: P.TargetFacts, options: P.RestoreOptions, peers: tuple[P.PeerProbe, ...]
) -> RefusedError | None:
    """Return the RefusedError a real run would raise for these facts (None when it would proceed)."""
    try:
        P.check_preconditions(backup, target, options, peers)
    except RefusedError as err:
        return err
    return None


def show_plan(ui: UI, plan: P.Plan, omit: str | None = None, *, as_data: bool = False) -> None:
    """Print the plan on stdout as readable lines, and the warnings on stderr except one starting
    with `omit` (the refusal the caller raises). With --format json/yaml stdout gets ONE document:
    the verb's summary (which holds the plan), or the plan itself when `as_data` (no summary follows)."""
    if ui.format.value != "tabular":
        if as_data:
            ui.data(plan.as_dict())
        return
    ui.line(f"restore plan ({plan.mode.value}): backup {plan.backup_id} -> {plan.target}")
    ui.line(
        f"  machine {plan.machine_id}: {', '.join(plan.old_addresses) or 'unknown'} -> {plan.new_address}"
    )
    for line in plan.demoted:
        ui.line(f"  {line}")
    if plan.target_kind:
        ui.line(f"  target: {plan.target_kind}")
    ui.line("steps:")
    for n, step in enumerate(plan.steps, 1):
        ui.line(f"  {n:>2}. {step.title}")
        for detail in step.details:
            ui.line(f"        {detail}")
    if plan.harvest:
        ui.line("provisioner-harvest-mode -> none in every model (earlier value, command to turn it back):")
        for h in plan.harvest:
            was = h.was or f"unset (default {P.HARVEST_DEFAULT})"
            ui.line(f"  {h.model or h.model_uuid}: {was}  ->  {h.restore_command()}")
    if plan.changes:
        ui.line("re-addressing (database and agent.conf):")
        for change in plan.changes:
            ui.line(f"  {change}")
    for warning in plan.warnings:
        if omit is None or not warning.startswith(omit):
            ui.warn(warning)


def next_steps(api_port: int, address: str, harvest: tuple[P.HarvestMode, ...]) -> tuple[str, ...]:
    """Return what the operator does next: check the controller, turn each model's harvest mode
    back once its machines look right (the exact commands), restore HA, point the client."""
    back = [f"  {h.restore_command()}" for h in harvest]
    turn_back = (
        ("harvesting of unknown instances is off (provisioner-harvest-mode none) in every model; once "
         "`juju status` shows the machines you expect, turn each model back:", *back)
        if harvest else ()
    )
    return (
        f"check the controller: juju status -m controller (API at {address}:{api_port})",
        *turn_back,
        "restore HA: juju enable-ha",
        "point the Juju client at the new address: jujubackup restore ... --update-client-config "
        "(or edit api-endpoints in controllers.yaml)",
    )
