"""run --config FILE: one pass over a fleet of controllers (issue 17).

For each controller of the fleet config (fleet_config.py), in parallel (at most `parallel` at once),
each in its own thread with its own SSH connections:

    create (the controller's mode and backup dir)
    -> copy off the controller into every store it names, through the stores' interface: one
       stream tee'd into all of them (encrypted for a store with recipients), verified in full
       while it streams (what `verify FILE` checks), each copy read back (verified_copy.py on
       operations/copy.py)
    -> prune the controller's catalog by its `retention` (prune.py; the backup just copied and
       verified counts as verified, so it is the "newest verified backup" prune always keeps)
    -> prune this controller's copies in each store by its `store-retention` (the same rules; a
       store's copies of a controller are those whose ID ends in its model UUID; incomplete copies,
       without a valid sidecar, are never pruned)

A controller that fails at any stage is reported with that stage, its error and exit code; the
others go on. The exit code of the run: 0 when every controller succeeded; when some failed,
EXIT_PARTIAL (9) if any succeeded, else the exit code the failures share (e.g. 3 when none could be
reached), or 9 when they differ. `--metrics-file` gets the Prometheus textfile (metrics.py),
written atomically (a temp file in the same dir, renamed), also when controllers failed.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jujubackup import metrics
from jujubackup.catalog import CatalogRecord
from jujubackup.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    JujuBackupError,
    UsageError,
    local_os_error,
)
from jujubackup.fleet_config import Controller, Fleet
from jujubackup.host.base import Connector
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.operations.create import CreateRequest, create
from jujubackup.operations.prune import PruneRequest, prune
from jujubackup.operations.prune_store import StorePruneRequest, group_of, prune_store
from jujubackup.operations.verified_copy import VerifiedCopy, copy_and_verify
from jujubackup.stores.config import StoreConfig
from jujubackup.stores.factory import open_store
from jujubackup.ui import UI, PrefixedUI

STAGES = ("create", "copy", "prune")  # copy: into every store, each copy verified in full


@dataclass
class ControllerRun:
    """One controller's pass: how far it got and what it made."""

    name: str
    ok: bool = False
    stage: str = "create"
    host: str = ""
    backup_id: str = ""
    size: int = 0
    started: float = 0.0
    ended: float = 0.0
    seconds: float = 0.0
    copies: list[VerifiedCopy] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    pruned_in_stores: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""
    hint: str = ""
    exit_code: int = EXIT_OK

    def row(self) -> dict[str, Any]:
        """Return the summary table's row."""
        return {
            "controller": self.name,
            "result": "ok" if self.ok else f"FAILED ({self.stage}, exit {self.exit_code})",
            "backup": self.backup_id or "-",
            "size": self.size,
            "stores": [f"{c.store}={'ok' if c.ok else 'FAILED'}" for c in self.copies] or "-",
            "pruned": len(self.pruned),
            "seconds": round(self.seconds, 1),
            "error": self.error,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "controller": self.name, "ok": self.ok, "stage": self.stage, "exit-code": self.exit_code,
            "host": self.host, "backup": self.backup_id, "size": self.size,
            "seconds": round(self.seconds, 3),
            "stores": [{"store": c.store, "ok": c.ok, "size": c.size, "seconds": round(c.seconds, 3),
                        "location": c.location, "encrypted": c.encrypted, "error": c.error,
                        "pruned": self.pruned_in_stores.get(c.store, [])} for c in self.copies],
            "pruned": self.pruned, "error": self.error, "hint": self.hint,
        }

    def sample(self) -> metrics.ControllerSample:
        return metrics.ControllerSample(
            self.name, self.ok, self.exit_code, self.ended, self.seconds, self.size, len(self.pruned),
            tuple(metrics.StoreSample(c.store, c.ok, c.seconds, c.size) for c in self.copies))


@dataclass(frozen=True)
class RunResult:
    """The whole pass: one ControllerRun per controller, in the config's order."""

    runs: list[ControllerRun]

    @property
    def exit_code(self) -> int:
        return run_exit_code(self.runs)

    def as_dict(self) -> dict[str, Any]:
        failed = [r.name for r in self.runs if not r.ok]
        overall = "ok" if not failed else ("failed" if len(failed) == len(self.runs) else "partial")
        return {"result": overall, "exit-code": self.exit_code, "failed": failed,
                "controllers": [r.as_dict() for r in self.runs]}


def run_exit_code(runs: list[ControllerRun]) -> int:
    """Given the controllers' passes, return the run's exit code (module docstring)."""
    failed = [r for r in runs if not r.ok]
    if not failed:
        return EXIT_OK
    if len(failed) < len(runs):
        return EXIT_PARTIAL
    codes = {r.exit_code for r in failed}
    return codes.pop() if len(codes) == 1 else EXIT_PARTIAL


def run_fleet(
    fleet: Fleet, connector: Connector, ui: UI, *, metrics_file: Path | None = None
) -> RunResult:
    """Given the validated fleet and the CLI's Connector (over the command line's connection
    settings, which each controller's own settings complete), back up every
    controller (at most fleet.parallel at once); return the result (never raises for a
    controller's failure: it is in its ControllerRun). Write `metrics_file` when given.

    Raise UsageError (exit 2) for a metrics path that is a directory, NotFoundError (exit 5) for a
    metrics dir that does not exist (both before connecting), RefusedError (exit 6) when the
    metrics file cannot be written (after the pass).
    """
    if metrics_file is not None:
        check_metrics_dir(metrics_file)
    workers = min(fleet.parallel, len(fleet.controllers))
    ui.info(f"{len(fleet.controllers)} controller(s) from {fleet.path}, {workers} at once")
    result = RunResult(_in_parallel(fleet, connector, ui, workers))
    if metrics_file is not None:
        write_metrics(metrics_file, result)
        ui.info(f"metrics written to {metrics_file}")
    return result


def _in_parallel(fleet: Fleet, connector: Connector, ui: UI, workers: int) -> list[ControllerRun]:
    """Run backup_one for every controller, at most `workers` at once; return the runs in the
    config's order. Daemon threads, not an executor: Ctrl-C ends the process at once (an executor's
    threads are joined at exit); a create already running finishes on its controller by itself
    (detached, its EXIT trap restarts what it stopped) and a store keeps only a partial."""
    runs: list[ControllerRun | None] = [None] * len(fleet.controllers)
    gate = threading.Semaphore(workers)

    def work(index: int, controller: Controller) -> None:
        with gate:
            own = connector.with_settings(controller.connection(connector.settings))
            runs[index] = backup_one(controller, own, fleet.stores, PrefixedUI.of(ui, controller.name))

    threads = [threading.Thread(target=work, args=(i, c), name=f"jujubackup-run-{c.name}", daemon=True)
               for i, c in enumerate(fleet.controllers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r if r is not None else ControllerRun(c.name, error="internal error: no result",
                                                   exit_code=EXIT_INTERNAL)
            for r, c in zip(runs, fleet.controllers, strict=True)]


def backup_one(controller: Controller, connector: Connector,
               stores: Mapping[str, StoreConfig], ui: UI) -> ControllerRun:
    """Given one controller, its Connector and the fleet's stores, run its pass; return
    how it went (a failure is recorded with its stage, message, hint and exit code, never raised)."""
    run = ControllerRun(controller.name, started=time.time())
    clock = time.monotonic()
    try:
        record = _create(controller, connector, ui, run)
        host = connect_catalog(connector, ui, controller.backup_dir, holding=[record.id])
        try:
            run.stage = "copy"
            opened = [open_store(name, stores[name]) for name in controller.stores]
            run.copies = copy_and_verify(host, record, opened, ui) if opened else []
            if any(not c.ok for c in run.copies):
                raise _store_failure([c for c in run.copies if not c.ok])
            run.stage = "prune"
            if controller.retention is not None:
                streamed = any(c.stream_verified for c in run.copies)
                verified = frozenset({record.id}) if streamed else frozenset()
                request = PruneRequest(controller.retention, backup_dir=controller.backup_dir,
                                       verified=verified)
                run.pruned = prune(host, request, ui, confirm=lambda records: True).removed
            else:
                ui.debug("no retention policy: nothing pruned")
        finally:
            host.close()
        if controller.store_retention is not None:
            in_stores = StorePruneRequest(controller.store_retention, verified=frozenset({record.id}),
                                          group=group_of(record.id))
            for store in opened:
                run.stage = f"prune store {store.name}"
                pruned = prune_store(store, in_stores, ui, confirm=lambda copies: True)
                run.pruned_in_stores[store.name] = pruned.removed
        run.ok = True
        run.stage = "done"
        ui.info(f"done: {record.id} ({len(run.copies)} store(s), {len(run.pruned)} pruned)")
    except JujuBackupError as err:
        run.error, run.hint, run.exit_code = err.message, err.hint or "", err.exit_code
        ui.error(f"failed at {run.stage}: {err.message}", err.hint)
    except Exception as err:  # a bug must not take the other controllers down
        run.error, run.exit_code = f"internal error: {type(err).__name__}: {err}", EXIT_INTERNAL
        ui.error(f"failed at {run.stage}: {run.error}", "re-run with -v and report this as a bug")
    run.ended = time.time()
    run.seconds = time.monotonic() - clock
    return run


def _create(
    controller: Controller, connector: Connector, ui: UI, run: ControllerRun
) -> CatalogRecord:
    """Create the controller's backup (its mode, backup dir); note it in `run`; return its record."""
    request = CreateRequest(notes=f"jujubackup run ({controller.name})", mode=controller.mode,
                            exclude_logs=controller.exclude_logs, backup_dir=controller.backup_dir)
    created = create(connector, ui, request)
    run.host, run.backup_id, run.size = created.host, created.record.id, created.record.size
    ui.info(f"created {created.record.id} on {created.host} ({created.record.size} bytes)")
    return created.record


def _store_failure(bad: list[VerifiedCopy]) -> JujuBackupError:
    """Return the error of a pass whose copies failed: the first failed copy's exit code."""
    detail = "; ".join(f"{c.store}: {c.error}" for c in bad)
    return JujuBackupError(f"copy to {len(bad)} store(s) failed: {detail}", exit_code=bad[0].exit_code,
                           hint="nothing was pruned; the backup stays on the controller; fix the store "
                           "and run again")


def check_metrics_dir(path: Path) -> None:
    """Raise NotFoundError (exit 5) when the metrics file's directory does not exist, UsageError
    (exit 2) when the path is a directory (checked before the pass, which may take long)."""
    if path.is_dir():
        raise UsageError(f"--metrics-file {path} is a directory", hint="give a file path ending in .prom")
    if not path.parent.is_dir():
        raise local_os_error(FileNotFoundError(2, "No such file or directory", str(path.parent)),
                             "--metrics-file's directory")


def write_metrics(path: Path, result: RunResult) -> None:
    """Write the metrics textfile atomically (temp file in the same dir, fsync, rename, 0644),
    keeping the previous file's last-success times for what failed now."""
    try:
        previous = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        previous = ""
    text = metrics.render((r.sample() for r in result.runs), finished=time.time(),
                          exit_code=result.exit_code, previous=metrics.last_successes(previous))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)  # node_exporter runs as its own user
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        raise local_os_error(err, f"writing --metrics-file {path}") from err

