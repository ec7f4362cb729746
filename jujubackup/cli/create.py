"""`jujubackup create [NOTES]`: back up a controller into its catalog; print the ID."""

from __future__ import annotations

from typing import Annotated

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.errors import UsageError
from jujubackup.operations.create import CreateRequest, create
from jujubackup.profiles import DEFAULT_BACKUP_DIR, MODE_ONLINE, MODES
from jujubackup.settings import OutputFormat


def register(app: typer.Typer) -> None:
    @app.command("create")
    def create_cmd(
        ctx: typer.Context,
        notes: Annotated[str, typer.Argument(help="Free text stored with the backup.")] = "",
        mode: Annotated[
            str,
            typer.Option(
                "--mode",
                help=f"Consistency: {'|'.join(MODES)}. online: juju-db keeps running (mongodump --oplog); "
                "quiesce: jujud stopped while dumping; stop: juju-db stopped, dumped from a private mongod.",
            ),
        ] = MODE_ONLINE,
        exclude_logs: Annotated[bool, typer.Option("--exclude-logs", help="Leave the logs DB out.")] = False,
        force: Annotated[bool, typer.Option("--force", help="Go on despite too little free space.")] = False,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Back up a controller (dump juju-db + state files) and store it on the controller under an ID."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        if mode not in MODES:
            raise UsageError(f"unknown --mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
        request = CreateRequest(
            notes=notes, mode=mode, force=force, exclude_logs=exclude_logs, backup_dir=backup_dir
        )
        result = create(opts.connector, ui, request)
        ui.info(f"stored {result.record.id} on {result.host} ({result.record.size} bytes)")
        if ui.format is OutputFormat.tabular:
            ui.line(result.record.id)
        else:
            ui.data(result.record.to_dict())
