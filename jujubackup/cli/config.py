"""`jujubackup config check FILE`: validate a fleet config (the file `run --config` reads)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup import fleet_config
from jujubackup.cli import FormatOption, make_ui, options
from jujubackup.settings import OutputFormat

COLUMNS = ("name", "source", "mode", "backup-dir", "retention", "store-retention", "stores")


def register(app: typer.Typer) -> None:
    config_app = typer.Typer(help="Fleet config files (`run --config FILE`).", no_args_is_help=True,
                             rich_markup_mode=None)
    app.add_typer(config_app, name="config")

    @config_app.command("check", help="Validate a fleet config: every problem as FILE:LINE: key: what "
                        "(exit 2), else show each controller's resolved settings.\n\n"
                        "\b\n" + fleet_config.EXAMPLE)
    def check_cmd(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(metavar="FILE", help="The YAML fleet config.")],
        fmt: FormatOption = None,
    ) -> None:
        ui = make_ui(options(ctx), fmt)
        fleet = fleet_config.load(file)
        rows = [c.summary() for c in fleet.controllers]
        if ui.format is not OutputFormat.tabular:
            ui.data({"file": str(file), "parallel": fleet.parallel, "controllers": rows,
                     "stores": sorted(fleet.stores)})
            return
        title = f"{file}: ok ({len(rows)} controller(s), {fleet.parallel} at once)"
        ui.data(rows, columns=COLUMNS, title=title)
