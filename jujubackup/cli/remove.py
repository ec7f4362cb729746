"""`jujubackup remove ID... [--yes]`: delete stored backups."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jujubackup.catalog import CatalogRecord
from jujubackup.cli import BackupDirOption, FormatOption, YesOption, make_ui, options
from jujubackup.errors import UsageError
from jujubackup.operations.remove import remove
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.ui import safe_text


def register(app: typer.Typer) -> None:
    @app.command("remove")
    def remove_cmd(
        ctx: typer.Context,
        backup_ids: Annotated[
            list[str], typer.Argument(metavar="ID...", help="Backup IDs, unique prefixes or `latest`.")
        ],
        yes: YesOption = False,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Delete stored backups from the controller (asks unless --yes).

        A backup whose record fails validation (never listed, never used) is removed when named by
        its full ID. Declining the question removes nothing and exits 6 ("not confirmed: nothing removed").
        """
        opts = options(ctx)
        ui = make_ui(opts, fmt)

        def confirm(records: list[CatalogRecord], invalid: dict[str, str]) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                raise UsageError(
                    "remove asks for confirmation but stdin is not a terminal", hint="give --yes"
                )
            for record in records:
                ui.info(f"  {record.id}  ({record.size} bytes, {record.metadata.notes or 'no notes'})")
            for backup_id, why in invalid.items():
                ui.info(f"  {backup_id}  (its record is invalid: {safe_text(why)})")
            count = len(records) + len(invalid)
            return typer.confirm(f"remove {count} backup(s)?", default=False, err=True)

        removed = remove(opts.connector, ui, backup_ids, confirm, backup_dir)
        if ui.format is OutputFormat.tabular:
            for backup_id in removed:
                ui.line(backup_id)
        else:
            ui.data({"removed": removed})
