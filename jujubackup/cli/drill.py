"""`jujubackup drill`: parse flags, build a DrillRequest, call operations.drill, render the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup import profiles
from jujubackup.cli import BackupDirOption, BackupIdArgument, FormatOption, make_ui, options
from jujubackup.cli.storeopts import (
    ArchiveOption,
    IdentityOption,
    StoreConfigOption,
    StoreOption,
    WorkDirOption,
    hold_archive,
)
from jujubackup.drillreport import Report
from jujubackup.errors import VerifyError
from jujubackup.operations.drill import DrillRequest, drill
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI


def register(app: typer.Typer) -> None:
    app.command(
        "drill",
        help="Prove a backup restores: restore it onto a throwaway --target with the target's egress "
        "closed (nftables/iptables), then check juju-db PRIMARY, jujud active, the API certificate, "
        "the document counts and the UUIDs. Exit 0 when every check passes, 8 when one fails, 6 "
        "when the target is a live or model machine (without --force) or cannot be isolated.",
    )(drill_cmd)


def drill_cmd(
    ctx: typer.Context,
    backup_id: BackupIdArgument = None,
    archive: ArchiveOption = None,
    store: StoreOption = None,
    store_config: StoreConfigOption = None,
    identity: IdentityOption = None,
    target: Annotated[
        str,
        typer.Option("--target", "-t", help="The throwaway host to drill on ([user@]host[:port] or alias)."),
    ] = "",
    junit: Annotated[
        Path | None,
        typer.Option("--junit", help="Also write the checks as a JUnit XML file (one testcase each)."),
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the drilled controller running (still isolated) to look at.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Drill onto a host running Juju or answering as a machine of the backup."
        ),
    ] = False,
    work_dir: WorkDirOption = None,
    backup_dir: BackupDirOption = profiles.DEFAULT_BACKUP_DIR,
    output_format: FormatOption = None,
) -> None:
    """Restore drill (see the command help)."""
    opts = options(ctx)
    ui = make_ui(opts, output_format)
    archive, work_dir = hold_archive(ctx, archive, store, store_config, identity, work_dir)
    request = DrillRequest(
        target=target,
        backup_ref=backup_id,
        archive=archive,
        junit=junit,
        keep=keep,
        force=force,
        work_dir=work_dir,
        backup_dir=backup_dir,
    )
    report = drill(opts.connector, request, ui)
    show(ui, report)
    failed = report.failed()
    if failed:
        raise VerifyError(
            f"drill of {report.backup_id} on {report.target}: {len(failed)} of {len(report.checks)} checks "
            f"failed: {', '.join(c.name for c in failed)}",
            hint="the report says what each found" + (f"; JUnit: {junit}" if junit else ""),
        )


def show(ui: UI, report: Report) -> None:
    """Print the report: one row per check and the next steps (tabular), or the report's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(report.as_dict())
        return
    ui.line(f"drill of {report.backup_id} on {report.target}: {'PASSED' if report.ok else 'FAILED'}")
    ui.data(report.rows(), columns=["check", "result", "seconds", "detail"])
    ui.line("next steps:")
    for step in report.next_steps:
        ui.line(f"  {step}")
