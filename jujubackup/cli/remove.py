"""`jujubackup remove ID... [--yes]`: delete stored backups."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jujubackup.catalog import CatalogRecord
from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.errors import UsageError
from jujubackup.operations.remove import remove
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat


def register(app: typer.Typer) -> None:
    @app.command("remove")
    def remove_cmd(
        ctx: typer.Context,
        backup_ids: Annotated[
            list[str], typer.Argument(metavar="ID...", help="Backup IDs, unique prefixes or `latest`.")
        ],
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Delete stored backups from the controller (asks unless --yes).

        Declining the question removes nothing and exits 6 ("not confirmed: nothing removed").
        """
        opts = options(ctx)
        ui = make_ui(opts, fmt)

        def confirm(records: list[CatalogRecord]) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                raise UsageError(
                    "remove asks for confirmation but stdin is not a terminal", hint="give --yes"
                )
            for record in records:
                ui.info(f"  {record.id}  ({record.size} bytes, {record.metadata.notes or 'no notes'})")
            return typer.confirm(f"remove {len(records)} backup(s)?", default=False, err=True)

        removed = remove(opts.connection, ui, backup_ids, confirm, backup_dir)
        if ui.format is OutputFormat.tabular:
            for backup_id in removed:
                ui.line(backup_id)
        else:
            ui.data({"removed": removed})
