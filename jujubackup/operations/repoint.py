"""repoint: point every agent of the model at a restored controller (issue 14).

connect to the controller → probe → repoint-list (its database: machines, agents' API addresses)
→ for each machine, in parallel (--parallel): connect as Juju does (ubuntu, the Juju client's key or
-i, the ssh config; with --via-controller through the controller) → repoint-machine (rewrite
apiaddresses of every agent.conf, restart the agents, wait until they connect) → a table, and the
state of this run for `--resume`.

Juju's 2.x restore did this step inside the controller (state/backups/restore.go updateAllMachines:
one goroutine per machine, errors only logged); here a machine that fails is reported with why and
with the command that finishes it by hand, and the run exits EXIT_PARTIAL.

The resume state is kept on this workstation (0600, $XDG_STATE_HOME/jujubackup/repoint/<controller
uuid>.json): re-pointing changes nothing on the controller, and the state only says which machines
this operator already finished with which addresses. A plain re-run (or one from another
workstation) is safe too: an agent whose agent.conf already holds the addresses and that is
connected is left alone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jujubackup import profiles, scripts
from jujubackup import repoint as R
from jujubackup.connect import connect_one
from jujubackup.errors import JujuBackupError, PartialError, RefusedError, RemoteStepError, UsageError
from jujubackup.flagcheck import exclusive, in_range
from jujubackup.host.base import Connector, Host
from jujubackup.host.target import SSHTarget
from jujubackup.remote_codes import RC_NOT_A_CONTROLLER
from jujubackup.ui import UI

DEFAULT_PARALLEL = 16
VIA_PARALLEL = 8  # through the controller: below its sshd's MaxStartups 10 (unauthenticated sessions)
DEFAULT_WAIT = 120.0


@dataclass(frozen=True)
class RepointRequest:
    """What the operator asked for (built once by the CLI, or by restore)."""

    target: str | None = None
    via_controller: bool = False
    parallel: int = DEFAULT_PARALLEL
    wait: float = DEFAULT_WAIT
    resume: bool = False
    dry_run: bool = False
    state_dir: Path | None = None  # default: $XDG_STATE_HOME/jujubackup/repoint
    demoted: tuple[str, ...] = ()
    """Machine ids (controller model) of the backup's other controllers, which the restore demoted
    (rewrite.is_controller_machine decided them): not re-pointed, listed as such."""


DEMOTED = ("a controller of the backup, demoted by the restore: not re-pointed (it runs its own "
           "controller agent, or is gone; remove it with `juju remove-machine --force`)")


@dataclass
class RepointResult:
    """Every machine's outcome, the addresses used, and whether anything is left to do."""

    controller: str
    addresses: tuple[str, ...]
    outcomes: list[R.Outcome] = field(default_factory=list)
    rejected: tuple[str, ...] = ()
    dry_run: bool = False
    state_file: Path | None = None

    @property
    def left(self) -> list[R.Outcome]:
        """The machines not re-pointed (failed, unreachable), not counting dry-run plans."""
        return [o for o in self.outcomes if o.result in ("failed", "unreachable")]

    def rows(self) -> list[dict[str, Any]]:
        """Return one table row per machine: machine, model, address, agents, result."""
        rows = []
        for o in self.outcomes:
            agents = ", ".join(f"{a.tag} {a.state}" + (f" {a.address}" if a.address else "")
                               for a in o.agents)
            result = o.result + (" (earlier run)" if o.earlier else "") + (f": {o.why}" if o.why else "")
            rows.append({"machine": o.machine.machine_id, "model": o.machine.model_name,
                         "address": o.machine.address or "-", "agents": agents or "-", "result": result})
        return rows

    def as_data(self) -> dict[str, Any]:
        """Return the result for --format json|yaml."""
        return {
            "controller": self.controller,
            "api-addresses": list(self.addresses),
            "dry-run": self.dry_run,
            "machines": [
                {"model-uuid": o.machine.model_uuid, "model": o.machine.model_name,
                 "machine": o.machine.machine_id, "address": o.machine.address, "result": o.result,
                 "why": o.why, "earlier-run": o.earlier, "by-hand": o.by_hand,
                 "agents": [{"tag": a.tag, "changed": a.changed, "restarted": a.restarted,
                             "state": a.state, "address": a.address, "error": a.error} for a in o.agents],
                 **({"diff": o.diff} if self.dry_run else {})}
                for o in self.outcomes
            ],
            "rejected-records": list(self.rejected),
        }


def repoint(connector: Connector, request: RepointRequest, ui: UI) -> RepointResult:
    """Re-point the agents of the model of the controller at `request.target`; return every
    machine's outcome (the caller renders it and raises partial_error(result) when some are left).

    Raise UsageError for bad flags, ConnectError (exit 3) if the controller cannot be reached,
    RemoteStepError (exit 4) if its database cannot be read (exit 5 inside: not a controller)."""
    check_request(request)
    controller = connect_one(connector, str(request.target))
    try:
        return repoint_from(connector, controller, request, ui)
    finally:
        controller.close()


def check_request(request: RepointRequest) -> None:
    """Raise UsageError unless the request is complete and sane."""
    if not request.target:
        raise UsageError("repoint needs --target HOST (the restored controller)")
    check_options(request)
    exclusive(resume=request.resume, dry_run=request.dry_run)


def check_options(request: RepointRequest) -> None:
    """Raise UsageError unless --parallel and --wait are in range (repoint's own, and the ones
    restore passes to its repoint stage)."""
    in_range("--parallel", request.parallel, 1, 64, hint="use 1..64")
    in_range("--wait", request.wait, 1, 3600, hint="seconds, 1..3600")


def repoint_from(connector: Connector, controller: Host, request: RepointRequest,
                 ui: UI, inventory: R.Inventory | None = None) -> RepointResult:
    """Given a connected controller, list its machines (unless `inventory` is that list already,
    as restore's finish stage read it) and re-point them; return the outcomes (also used by
    restore, whose target is already connected)."""
    started = time.monotonic()
    inventory = inventory or list_machines(controller)
    ui.debug(f"repoint-list: {len(inventory.machines)} machine(s) in {time.monotonic() - started:.2f} s")
    for text in inventory.rejected:
        ui.warn(f"ignored a database record: {text}")
    state_file = _state_file(request, inventory.controller_uuid)
    saved = _load_state(state_file)
    # the restore that demoted them said so: in the state file (this workstation) and in its record
    # on the controller (repoint.RESTORE_RECORD: any workstation); a later `repoint` skips them too
    demoted = (set(request.demoted) | {str(d) for d in saved.get("demoted") or [] if isinstance(d, str)}
               | set(inventory.demoted))
    state = saved if request.resume else {}
    if request.resume and state.get("addresses") not in (None, list(inventory.api_addresses)):
        ui.warn("the controller's API addresses changed since the last run: every machine is done again")
        state = {}
    via = connector.target(str(request.target or controller.name)) if request.via_controller else None
    result = RepointResult(controller=controller.name, addresses=inventory.api_addresses,
                           rejected=inventory.rejected, dry_run=request.dry_run, state_file=state_file)
    done_before = set(state.get("done") or [])
    todo: list[R.Machine] = []
    for m in inventory.machines:
        if m.model_uuid == inventory.controller_model and m.machine_id in demoted:
            result.outcomes.append(R.Outcome(m, "skipped", DEMOTED))
        elif m.problem:
            result.outcomes.append(R.Outcome(m, "skipped", m.problem))
        elif m.key in done_before:
            result.outcomes.append(R.Outcome(m, "done", earlier=True))
        else:
            todo.append(m)
    ui.info(f"re-pointing {len(todo)} machine(s) at {', '.join(inventory.api_addresses)}"
            + (f" through {controller.name}" if via else "") + (" (dry run)" if request.dry_run else ""))
    script = scripts.render("repoint-machine", addresses=list(inventory.api_addresses),
                            dry_run=request.dry_run, wait_seconds=int(request.wait))
    via_name = via.display if via else None
    with ui_progress(ui, "re-pointing", len(todo)) as advance:
        result.outcomes.extend(run_all(connector, todo, script, via, request, via_name,
                                       inventory.api_addresses, advance, ui))
    order = {m.key: i for i, m in enumerate(inventory.machines)}
    result.outcomes.sort(key=lambda o: order.get(o.machine.key, 0))
    if not request.dry_run:
        done = sorted(done_before | {o.machine.key for o in result.outcomes if o.result == "done"})
        _save_state(state_file, {"controller-uuid": inventory.controller_uuid,
                                 "addresses": list(inventory.api_addresses), "done": done,
                                 "demoted": sorted(demoted), "updated": time.time()})
    return result


def list_machines(controller: Host, known_shell: tuple[str, str] = ("", "")) -> R.Inventory:
    """Run repoint-list on the controller and return its validated Inventory; `known_shell`: a mongo
    shell's path and its version (X.Y.Z) as a probe of this host read them (the script then asks
    that shell no `--version`). Raise RemoteStepError (exit 4) if the script fails or its output
    does not parse."""
    shells = list(dict.fromkeys(p.mongo_shell for p in profiles.PROFILES))
    text = scripts.render("repoint-list", shells=shells, record_path=R.RESTORE_RECORD,
                          record_max=R.MAX_RECORD, known_shell=known_shell[0],
                          known_shell_version=known_shell[1])
    try:
        doc = controller.run("repoint-list", text, timeout=180).json()
    except RemoteStepError as err:
        if err.returncode != RC_NOT_A_CONTROLLER:
            raise
        last = err.stderr_tail.strip().splitlines()[-1] if err.stderr_tail.strip() else "not a controller"
        raise RefusedError(
            f"{controller.name} is not a Juju controller: {last.removeprefix('repoint-list: ')}",
            hint="give --target the restored controller (the host `restore` ran on)",
        ) from err
    try:
        return R.parse_listing(doc)
    except ValueError as err:
        raise RemoteStepError(
            "repoint-list", 0, str(err), host=controller.name,
            message=f"cannot read the machines from {controller.name}'s database: {err}",
        ) from err


def machine_target(connector: Connector, machine: R.Machine, via: SSHTarget | None) -> SSHTarget:
    """Return how to reach `machine` as Juju does (Connector.machine_target); through `via` (the
    controller) when given."""
    target = connector.machine_target(machine.address)
    return replace(target, jump=via) if via is not None else target


def run_all(connector: Connector, machines: Sequence[R.Machine], script: str,
            via: SSHTarget | None, request: RepointRequest, via_name: str | None,
            addresses: Sequence[str], advance: Callable[[int], None],
            ui: UI | None = None) -> list[R.Outcome]:
    """Re-point `machines`, at most request.parallel at a time; return their outcomes."""
    if not machines:
        return []
    out: list[R.Outcome] = []
    workers = min(request.parallel, len(machines), VIA_PARALLEL if via is not None else request.parallel)
    with ThreadPoolExecutor(max_workers=workers,
                            thread_name_prefix="repoint") as pool:
        futures = {pool.submit(repoint_machine, connector, m, script, via, request): m for m in machines}
        for fut in as_completed(futures):
            outcome = fut.result()
            if outcome.result in ("failed", "unreachable"):
                outcome.by_hand = R.by_hand(outcome.machine, addresses, via_name)
            out.append(outcome)
            if ui is not None:
                ui.debug(f"{outcome.machine.model_name}/{outcome.machine.machine_id}: {outcome.result} "
                         f"{outcome.extra}")
            advance(1)
    return out


def repoint_machine(connector: Connector, machine: R.Machine, script: str,
                    via: SSHTarget | None, request: RepointRequest) -> R.Outcome:
    """Re-point one machine; return its Outcome (never raises for the machine's own failures)."""
    started = time.monotonic()
    try:
        host = connect_one(connector, machine_target(connector, machine, via))
    except JujuBackupError as err:
        return R.Outcome(machine, "unreachable", _one_line(err.message))
    connected = time.monotonic()
    try:
        res = host.run("repoint-machine", script, timeout=request.wait + 60)
        report = R.parse_machine_report(res.json(), host.name)
    except JujuBackupError as err:
        return R.Outcome(machine, "failed", _one_line(err.message))
    finally:
        host.close()
    timing = {"connect": round(connected - started, 2), "run": round(time.monotonic() - connected, 2)}
    if request.dry_run:
        changed = sum(a.changed for a in report.agents)
        return R.Outcome(machine, "planned", f"{changed} agent.conf to change", report.agents, report.diff,
                         extra=timing)
    if report.connected:
        return R.Outcome(machine, "done", agents=report.agents, extra=timing)
    bad = [a for a in report.agents if a.state != "connected"]
    why = "; ".join(f"{a.tag} " + (f"not connected: {a.error}" if a.error else "did not connect")
                    for a in bad)
    return R.Outcome(machine, "failed", f"{why} (waited {request.wait:g} s)", report.agents)


def partial_error(result: RepointResult) -> PartialError | None:
    """Return the error to raise when machines are left (None when every machine is done)."""
    left = result.left
    if not left:
        return None
    names = ", ".join(f"{o.machine.model_name}/{o.machine.machine_id}" for o in left)
    return PartialError(
        f"{len(left)} machine(s) not re-pointed: {names}",
        hint=f"bring them back and run `jujubackup repoint --target {result.controller} --resume`, or "
        "run the by-hand command shown for each",
    )


def render(ui: UI, result: RepointResult) -> None:
    """Show the result: the table (or json/yaml), the dry-run diffs, the by-hand commands."""
    from jujubackup.settings import OutputFormat

    if ui.format is not OutputFormat.tabular:
        ui.data(result.as_data())
        return
    ui.data(result.rows(), columns=("machine", "model", "address", "agents", "result"))
    for o in result.outcomes:
        if result.dry_run and o.diff:
            ui.line(f"--- machine {o.machine.model_name}/{o.machine.machine_id} ({o.machine.address})")
            ui.line(o.diff.rstrip("\n"))
    for o in result.left:
        if o.by_hand:
            ui.line(f"by hand, {o.machine.model_name}/{o.machine.machine_id}: {o.by_hand}")


@contextmanager
def ui_progress(ui: UI, description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield advance(n) for a machines-done progress bar on a TTY (no-op otherwise)."""
    with ui.counter(description, total) as advance:
        yield advance


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _state_file(request: RepointRequest, controller_uuid: str) -> Path:
    base = request.state_dir
    if base is None:
        xdg = os.environ.get("XDG_STATE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".local/state") / "jujubackup" / "repoint"
    name = controller_uuid if R.UUID_RE.match(controller_uuid or "") else "unknown-controller"
    return base / f"{name}.json"


def _load_state(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise UsageError(
            f"cannot read the repoint state {path}: {err}",
            hint="remove it and run without --resume (already re-pointed agents are left alone)",
        ) from err
    return doc if isinstance(doc, dict) else {}


def _save_state(path: Path, doc: dict[str, Any]) -> None:
    """Write the state file atomically, 0600 (its directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)
