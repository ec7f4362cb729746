"""`jujubackup info ID`: one stored backup's record."""

from __future__ import annotations

from typing import Annotated

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.operations.info import info
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_cmd(
        ctx: typer.Context,
        backup_id: Annotated[str, typer.Argument(metavar="ID", help="Backup ID, unique prefix or `latest`.")],
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Show a stored backup's metadata, checksums and manifest summary."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        record = info(opts.connector, ui, backup_id, backup_dir)
        data = record.to_dict()
        if ui.format is OutputFormat.tabular:
            manifest = data.pop("manifest", {}) or {}
            data["consistency"] = manifest.get("consistency", "")
            data["down-seconds"] = manifest.get("db-unavailable-seconds", {})
            data["files"] = manifest.get("files", "")
        ui.data(data)
