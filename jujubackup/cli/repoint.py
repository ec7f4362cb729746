"""`jujubackup repoint`: parse flags, build a RepointRequest, call operations.repoint, render."""

from __future__ import annotations

from typing import Annotated

import typer

from jujubackup.cli import FormatOption, make_ui, options
from jujubackup.operations.repoint import (
    DEFAULT_PARALLEL,
    DEFAULT_WAIT,
    RepointRequest,
    partial_error,
    render,
    repoint,
)

ParallelOption = Annotated[
    int,
    typer.Option("--parallel", help="Machines re-pointed at once (1..64; at most 8 with --via-controller).",
                 min=1, max=64),
]
"""`--parallel N`, shared with restore."""
WaitOption = Annotated[
    float, typer.Option("--wait", help="Seconds to wait for each machine's agents to connect.")
]
ViaOption = Annotated[
    bool, typer.Option("--via-controller", help="Reach the machines through the controller (ProxyJump).")
]


def register(app: typer.Typer) -> None:
    app.command(
        "repoint",
        help="Point every agent of the model at a restored controller: each machine's agent.conf "
        "apiaddresses (from the controller's database), agents restarted, connections checked. "
        "Exit 9 when machines are left: `--resume` retries only those.",
    )(repoint_cmd)


def repoint_cmd(
    ctx: typer.Context,
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="The restored controller host.")
    ] = None,
    via_controller: ViaOption = False,
    parallel: ParallelOption = DEFAULT_PARALLEL,
    wait: WaitOption = DEFAULT_WAIT,
    resume: Annotated[
        bool, typer.Option("--resume", help="Retry only the machines an earlier run left.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the machines and the agent.conf diff; change nothing.")
    ] = False,
    output_format: FormatOption = None,
) -> None:
    """Re-point the model's agents (see the command help)."""
    opts = options(ctx)
    ui = make_ui(opts, output_format)
    request = RepointRequest(target=target, via_controller=via_controller, parallel=parallel, wait=wait,
                             resume=resume, dry_run=dry_run)
    result = repoint(opts.connector, request, ui)
    render(ui, result)
    error = partial_error(result)
    if error is not None:
        raise error
    if dry_run:
        ui.info("dry run: nothing changed")
