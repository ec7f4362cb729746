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
        """Probe a controller: profile, machine, versions, services, replica set, disk, dump estimate.

        With several controllers (-H repeated, -c with HA endpoints): a table of each of them, then
        the details of the first that answered (json/yaml: a list, one entry per controller)."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        result = status(opts.connector, ui, backup_dir)
        if ui.format is not OutputFormat.tabular:
            ui.data([m.to_dict() for m in result.members] if result.members else result.facts.to_dict())
            return
        if result.members:  # several controllers: the HA set, then the first one's details
            ui.data([m.row() for m in result.members])
            ui.line("")
        ui.data(result.summary())
