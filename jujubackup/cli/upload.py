"""`jujubackup upload FILE`: store a local archive in the controller's catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.operations.upload import UploadRequest, run_upload
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.transfer import parse_rate


def register(app: typer.Typer) -> None:
    @app.command("upload")
    def upload_cmd(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(metavar="FILE", help="A juju-backup .tar.gz.")],
        force: Annotated[bool, typer.Option("--force", help="Replace a stored same-ID backup.")] = False,
        bwlimit: Annotated[
            str | None, typer.Option("--bwlimit", metavar="RATE", help="Bytes/s, K/M/G suffixes (e.g. 20M).")
        ] = None,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Upload an archive: verified locally, streamed to a staging file, re-hashed on the
        controller, then registered under its ID (an interrupted upload resumes). Prints the ID."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        result = run_upload(opts.connector, ui, UploadRequest(file, force, parse_rate(bwlimit), backup_dir))
        if ui.format is OutputFormat.tabular:
            ui.line(result.id)
        else:
            ui.data(result.as_dict())
