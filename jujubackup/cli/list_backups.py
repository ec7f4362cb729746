"""`jujubackup list [--brief]`: the controllers' catalogs, merged.

Not named `list.py`: the submodule would shadow the builtin `list` in the `jujubackup.cli` namespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jujubackup.cli import BackupDirOption, FormatOption, make_ui, options
from jujubackup.cli.storeopts import StoreConfigOption, StoreOption
from jujubackup.errors import VerifyError
from jujubackup.local_archives import COLUMNS, list_local
from jujubackup.operations.list import MergedListing, list_backups
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI, human_bytes, to_the_second

STORE_COLUMNS = ("id", "stored", "size", "encrypted", "complete", "version", "notes")


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_cmd(
        ctx: typer.Context,
        brief: Annotated[bool, typer.Option("--brief", help="Only the IDs, one per line.")] = False,
        backup_dir: BackupDirOption = DEFAULT_BACKUP_DIR,
        local: Annotated[
            Path | None,
            typer.Option("--local", metavar="DIR", help="List archives in DIR on this workstation instead."),
        ] = None,
        check: Annotated[
            bool,
            typer.Option("--check", help="With --local: fully verify each archive (exit 8 if any fails)."),
        ] = False,
        store: StoreOption = None,
        store_config: StoreConfigOption = None,
        fmt: FormatOption = None,
    ) -> None:
        """List the backups stored on the controllers (oldest first; with several, which hold each),
        in a local DIR (--local), or in a store (--store NAME: a local dir or an S3 bucket)."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        if store is not None:
            list_store(ui, store, store_config, brief=brief)
        elif local is not None:
            list_local_dir(ui, local, check=check, brief=brief)
        else:
            show_listing(ui, list_backups(opts.connector, ui, backup_dir), brief=brief)


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """Given a listing row, return it as the table shows it: sizes with a binary unit, times to the
    second (json/yaml keep the exact bytes and times); the ID whole (ui.render_table)."""
    out = dict(row)
    if isinstance(out.get("size"), int):
        out["size"] = human_bytes(out["size"])
    for key in ("started", "stored"):
        if isinstance(out.get(key), str):
            out[key] = to_the_second(out[key])
    return out


def show_listing(ui: UI, listing: MergedListing, *, brief: bool) -> None:
    """Print the controllers' merged catalogs: IDs only (--brief), a table, or json/yaml records
    with the controllers holding each."""
    if brief:
        if ui.format is OutputFormat.tabular:
            for record in listing.records:
                ui.line(record.id)
        else:
            ui.data([r.id for r in listing.records])
    elif ui.format is OutputFormat.tabular:
        if listing.records:
            several = len(listing.listed) > 1
            ui.data([
                shown({**r.row(), **({"controllers": ",".join(listing.holders[r.id])} if several else {})})
                for r in listing.records
            ])
        else:
            ui.info(f"no backups stored in {listing.backup_dir}")
    else:
        ui.data([{**r.to_dict(), "controllers": listing.holders[r.id]} for r in listing.records])


def list_local_dir(ui: UI, local: Path, *, check: bool, brief: bool) -> None:
    """`list --local DIR`: the archives in DIR. Raise VerifyError (exit 8) when --check and any fails."""
    archives = list_local(local, check=check, warn=ui.warn)
    if brief:
        for archive in archives:
            ui.line(archive.id or archive.path.name)
    elif ui.format is OutputFormat.tabular and archives:
        ui.data([shown(a.row()) for a in archives], columns=COLUMNS)
    elif ui.format is OutputFormat.tabular:
        ui.info(f"no archives in {local}")
    else:
        ui.data([{**(a.record or {}), **a.row()} for a in archives])
    failed = [a for a in archives if a.verified.startswith("no")]
    if check and failed:
        raise VerifyError(f"{len(failed)} of {len(archives)} archives in {local} failed verification",
                          hint="`jujubackup verify FILE` shows every problem of one")


def list_store(ui: UI, store: str, store_config: Path | None, *, brief: bool) -> None:
    """`list --store NAME`: the copies a store holds (complete or not), oldest ID first."""
    from jujubackup.stores.factory import named_store  # pydantic only for the verbs using stores

    named = named_store(store_config, store)
    copies = named.list_backups()
    if brief:
        for copy in copies:
            ui.line(copy.id)
    elif ui.format is OutputFormat.tabular and copies:
        ui.data([shown(c.row()) for c in copies], columns=STORE_COLUMNS)
    elif ui.format is OutputFormat.tabular:
        ui.info(f"no backups in store {store} ({named.describe()})")
    else:
        ui.data([{**c.row(), "record": c.record} for c in copies])
