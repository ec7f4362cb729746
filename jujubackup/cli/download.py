"""`jujubackup download ID [FILE]`: stream a stored archive here, checksum-verified and resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.cli.storeopts import StoreConfigOption, StoreOption
from jujubackup.errors import UsageError
from jujubackup.operations.download import DownloadRequest, run_download, run_store_copy
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.transfer import parse_rate


def register(app: typer.Typer) -> None:
    @app.command("download")
    def download_cmd(
        ctx: typer.Context,
        backup_id: Annotated[str, typer.Argument(metavar="ID", help="Backup ID, unique prefix or `latest`.")],
        file: Annotated[
            Path | None, typer.Argument(metavar="[FILE]", help="Destination (default ./<ID>.tar.gz).")
        ] = None,
        directory: Annotated[
            Path | None, typer.Option("--dir", help="Directory to download into (created 0700 if missing).")
        ] = None,
        bwlimit: Annotated[
            str | None, typer.Option("--bwlimit", metavar="RATE", help="Bytes/s, K/M/G suffixes (e.g. 20M).")
        ] = None,
        encrypt_to: Annotated[
            list[str] | None,
            typer.Option("--encrypt-to", metavar="RECIPIENT",
                         help="Encrypt with age to RECIPIENT (age1…, 'ssh-ed25519 …', 'ssh-rsa …'; "
                         "repeatable): writes <ID>.tar.gz.age, the sidecar keeps the plaintext SHA-256."),
        ] = None,
        store: StoreOption = None,
        store_config: StoreConfigOption = None,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        fmt: FormatOption = None,
    ) -> None:
        """Download a stored backup (temp file renamed after its SHA-256 matches; an interrupted
        download resumes). Writes a `<ID>.json` sidecar next to it for `list --local`. With
        --encrypt-to the copy is age-encrypted as it streams (no plaintext file); with --store NAME it
        goes into that store (a local dir or S3) instead."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        if file is not None and directory is not None:
            raise UsageError("give FILE or --dir, not both")
        if (encrypt_to or store) and file is not None:
            raise UsageError("--encrypt-to and --store name the copy <ID>.tar.gz[.age] themselves: "
                             "give --dir DIR (or --store NAME), not FILE")
        if store and directory is not None:
            raise UsageError("give --dir or --store, not both")
        if encrypt_to or store:
            copied = run_store_copy(opts.connector, ui, backup_id, directory, store, store_config,
                                    encrypt_to or None, parse_rate(bwlimit), backup_dir)
            if ui.format is OutputFormat.tabular:
                ui.line(copied["file"])
            else:
                ui.data(copied)
            return
        if directory is not None and directory.exists() and not directory.is_dir():
            raise UsageError(f"--dir {directory} is not a directory")
        request = DownloadRequest(backup_id, file, directory, parse_rate(bwlimit), backup_dir)
        result = run_download(opts.connector, ui, request)
        if ui.format is OutputFormat.tabular:
            ui.line(str(result.path))
        else:
            ui.data(result.as_dict())
