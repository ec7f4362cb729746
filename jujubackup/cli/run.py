"""`jujubackup run --config FILE`: one pass over a fleet of controllers (create, copy, verify, prune)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jujubackup import fleet_config
from jujubackup.cli import FormatOption, make_ui, options
from jujubackup.errors import EXIT_OK, UsageError
from jujubackup.operations.run import RunResult, run_fleet
from jujubackup.settings import OutputFormat
from jujubackup.ui import UI

COLUMNS = ("controller", "result", "backup", "size", "stores", "pruned", "seconds", "error")


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        ctx: typer.Context,
        config: Annotated[Path, typer.Option(
            "--config", metavar="FILE", help="The fleet config (YAML; `jujubackup config check FILE`).")],
        metrics_file: Annotated[Path | None, typer.Option(
            "--metrics-file", metavar="FILE",
            help="Write Prometheus metrics here (textfile collector, e.g. "
            "/var/lib/prometheus/node-exporter/jujubackup.prom), atomically, also when controllers fail.",
        )] = None,
        fmt: FormatOption = None,
    ) -> None:
        """Back up every controller of a fleet config: create -> copy into its stores -> verify each
        copy -> prune its catalog by its retention. Controllers run in parallel (`parallel:` in the
        file); one failing does not stop the others. Exit 0 when all succeeded; 9 when some failed
        and some succeeded; when all failed, their common exit code (9 if they differ). The summary
        (--format json|yaml) says which failed, at which stage and why."""
        opts = options(ctx)
        ui = make_ui(opts, fmt)
        if opts.connection.hosts or opts.connection.controller:
            raise UsageError("run takes its controllers from --config, not -H/-c",
                             hint="list them under `controllers:` in the file")
        fleet = fleet_config.load(config)
        result = run_fleet(fleet, opts.connector, ui, metrics_file=metrics_file)
        show(ui, result)
        if result.exit_code != EXIT_OK:
            failed = [r for r in result.runs if not r.ok]
            ui.error(f"{len(failed)} of {len(result.runs)} controller(s) failed: "
                     + "; ".join(f"{r.name} at {r.stage} (exit {r.exit_code}): {r.error}" for r in failed))
            raise typer.Exit(result.exit_code)


def show(ui: UI, result: RunResult) -> None:
    """Print the summary: one row per controller (tabular), or the result's data."""
    if ui.format is not OutputFormat.tabular:
        ui.data(result.as_dict())
        return
    ui.data([r.row() for r in result.runs], columns=COLUMNS)
