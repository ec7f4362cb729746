"""`jujubackup status`: what the tool sees on a controller host."""

from __future__ import annotations

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.operations.status import status
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat


def register(app: typer.Typer) -> None:
    @app.command("status")
    def status_cmd(
        ctx: typer.Context,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Probe a controller: profile, machine, versions, services, replica set, disk, dump estimate."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        result = status(opts.connector, ui, backup_dir)
        if ui.format is OutputFormat.tabular:
            ui.data(result.summary())
        else:
            ui.data(result.facts.to_dict())
