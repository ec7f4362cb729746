"""`jujubackup restore`: parse flags, build a RestoreRequest, call operations.restore, show the result."""

from __future__ import annotations

from typing import Annotated

import typer

from jujubackup import profiles
from jujubackup.cli import BackupDirOption, BackupIdArgument, FormatOption, YesOption, make_ui, options
from jujubackup.cli.repoint import ParallelOption, ViaOption, WaitOption
from jujubackup.cli.storeopts import (
    ArchiveOption,
    IdentityOption,
    StoreConfigOption,
    StoreOption,
    WorkDirOption,
    hold_archive,
)
from jujubackup.operations.repoint import DEFAULT_PARALLEL, DEFAULT_WAIT, RepointRequest, partial_error
from jujubackup.operations.repoint import render as render_repoint
from jujubackup.operations.restore import restore
from jujubackup.restore.request import RestoreRequest, RestoreResult
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI

TargetOption = Annotated[
    str | None, typer.Option("--target", "-t", help="Host to restore onto ([user@]host[:port] or alias).")
]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="The target's address for the controller (default: probed).")
]
InstanceIdOption = Annotated[
    str | None,
    typer.Option(
        "--instance-id",
        help="The restored machine's instance id (default: the target's cloud-init instance id, "
        "else manual:<address>; the plan says which).",
    ),
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Show the plan and stop.")]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Override refusals (live old controllers, disk, mongo, uuid).")
]
AllowDowngradeOption = Annotated[
    bool, typer.Option("--allow-downgrade", help="Restore a backup older than the target's Juju.")
]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue an interrupted restore on --target.")]
RollbackOption = Annotated[
    bool, typer.Option("--rollback", help="Return --target to its snapshot from before a failed restore.")
]
UpdateClientConfigOption = Annotated[
    bool, typer.Option("--update-client-config", help="Point controllers.yaml api-endpoints at the target.")
]
NoRepointOption = Annotated[
    bool, typer.Option("--no-repoint", help="After a restore onto a new address, leave the agents alone.")
]


def register(app: typer.Typer) -> None:
    app.command(
        "restore",
        help="Restore a controller from a backup: `restore ID` (same controller), "
        "`restore ID --target HOST`, "
        "or disaster recovery `restore --archive FILE --target HOST`. Shows the plan and asks first.",
    )(restore_cmd)


def restore_cmd(
    ctx: typer.Context,
    backup_id: BackupIdArgument = None,
    archive: ArchiveOption = None,
    store: StoreOption = None,
    store_config: StoreConfigOption = None,
    identity: IdentityOption = None,
    target: TargetOption = None,
    address: AddressOption = None,
    instance_id: InstanceIdOption = None,
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    force: ForceOption = False,
    allow_downgrade: AllowDowngradeOption = False,
    resume: ResumeOption = False,
    rollback: RollbackOption = False,
    update_client_config: UpdateClientConfigOption = False,
    work_dir: WorkDirOption = None,
    no_repoint: NoRepointOption = False,
    via_controller: ViaOption = False,
    parallel: ParallelOption = DEFAULT_PARALLEL,
    wait: WaitOption = DEFAULT_WAIT,
    backup_dir: BackupDirOption = profiles.DEFAULT_BACKUP_DIR,
    output_format: FormatOption = None,
) -> None:
    """Restore (see the command help)."""
    opts = options(ctx)
    ui = make_ui(opts, output_format)
    archive, work_dir = hold_archive(ctx, archive, store, store_config, identity, work_dir)
    repoint = None if no_repoint else RepointRequest(
        via_controller=via_controller, parallel=parallel, wait=wait
    )
    request = RestoreRequest(
        backup_ref=backup_id, archive=archive, target=target, address=address, instance_id=instance_id,
        dry_run=dry_run, yes=yes, force=force, allow_downgrade=allow_downgrade, resume=resume,
        rollback=rollback, update_client_config=update_client_config, work_dir=work_dir,
        backup_dir=backup_dir, repoint=repoint,
    )
    result = restore(opts.connector, request, ui, confirm=lambda q: typer.confirm(q, default=False, err=True))
    show(ui, result)


def show(ui: UI, result: RestoreResult) -> None:
    """Print what the restore did: its summary (--format json/yaml), or what was rolled back, or the
    steps run, the verification, the next steps and the agents re-pointed. Raise EXIT_PARTIAL's
    error when the repoint stage left machines."""
    if result.dry_run:
        ui.info("dry run: nothing changed")
        return
    if ui.format is not OutputFormat.tabular:
        ui.data(result.summary())
        _raise_if_partial(result)
        return
    if result.rolled_back is not None:
        ui.line(f"rolled back; running again: {', '.join(result.rolled_back.get('started') or []) or 'none'}")
        return
    if result.outcome:
        ui.line(f"restore done (steps run: {', '.join(result.outcome.ran) or 'none'})")
        verify = result.outcome.verify
        if verify:
            ui.line(
                f"verified: juju-db {verify.get('db')}, jujud {verify.get('jujud')}, API answering, "
                f"new address in the DB: {verify.get('address_in_db')}"
            )
    ui.line("next steps:")
    for step in result.next_steps:
        ui.line(f"  - {step}")
    if result.repointed is not None:
        ui.line("agents re-pointed at the restored controller:")
        render_repoint(ui, result.repointed)
    _raise_if_partial(result)


def _raise_if_partial(result: RestoreResult) -> None:
    """Exit EXIT_PARTIAL when the restore's repoint stage left machines (listed above)."""
    if result.repointed is not None and (error := partial_error(result.repointed)) is not None:
        raise error
