"""`jujubackup info ID`: one stored backup's record."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.cli.storeopts import IdentityOption, StoreConfigOption, StoreOption
from jujubackup.operations.info import info, info_archive
from jujubackup.operations.verify import is_local
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.sources import Source


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_cmd(
        ctx: typer.Context,
        backup_id: Annotated[str, typer.Argument(
            metavar="ID|FILE", help="Backup ID, unique prefix or `latest`; or a local archive (.age too).")],
        store: StoreOption = None,
        store_config: StoreConfigOption = None,
        identity: IdentityOption = None,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Show a stored backup's metadata, checksums and manifest summary (on the controller; in a
        store with --store NAME, from its sidecar; or of a local FILE, an .age one decrypted as it is
        read with --identity FILE, up to its metadata only)."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        if store is not None or is_local(backup_id):
            from jujubackup.stores.factory import named_store  # pydantic only for the verbs using stores

            source = Source(store=named_store(store_config, store), ref=backup_id, identity=identity) \
                if store else Source(path=Path(backup_id), identity=identity)
            ui.data(info_archive(source))
            return
        record = info(opts.connector, ui, backup_id, backup_dir)
        data = record.to_dict()
        if ui.format is OutputFormat.tabular:
            manifest = data.pop("manifest", {}) or {}
            data["consistency"] = manifest.get("consistency", "")
            data["down-seconds"] = manifest.get("db-unavailable-seconds", {})
            data["files"] = manifest.get("files", "")
        ui.data(data)
