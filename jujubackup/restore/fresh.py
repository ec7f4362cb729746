"""A new restore as a sequence of named stages (DESIGN.md §5, issue 5):

  fetch (the archive) → prepare (connect the target, probe it, verify the archive in another process
  meanwhile, write the re-addressing overlay, push early with --yes) → plan → show → confirm →
  execute (restore/execute.py, journaled on the target) → finish (the API certificate, the next
  steps, the client config, the agents re-pointed).

`Stages` lets another verb (the drill) change what runs between them.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path

from jujubackup import apiprobe, profiles, scripts
from jujubackup import repoint as repoint_rules
from jujubackup.catalog import Catalog
from jujubackup.connect import connect_one
from jujubackup.errors import DeclinedError, JujuBackupError, VerifyError
from jujubackup.host.base import Connector, Host
from jujubackup.operations.repoint import RepointResult, list_machines, repoint_from
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.restore.clientconfig import update_client_config
from jujubackup.restore.gather import (
    Checked,
    fetch_stored,
    probe_target,
    read_slim,
    refuse_unfinished,
    verified_report,
)
from jujubackup.restore.overlay import Overlay, Prepared, prepare_overlay, prepared
from jujubackup.restore.request import Confirm, RestoreRequest, RestoreResult
from jujubackup.restore.show import dry_run_refusal, next_steps, show_plan
from jujubackup.restore.target import TargetProbe, needs_readdress, target_facts_peers
from jujubackup.ui import UI
from jujubackup.verifier import BackgroundVerify


@dataclass(frozen=True)
class Staged:
    """What a caller's hook sees of a restore under way: the connected target, the local archive,
    what the backup holds and what the target is."""

    target: Host
    archive: Path
    backup: P.BackupFacts
    facts: TargetProbe


@dataclass(frozen=True)
class Stages:
    """How another verb runs the restore's stages (the drill, issue 16); the defaults are `restore`'s.

    `probe_old_controllers`: probe the backup's old controllers from the target (refused if they
    answer). `on_probed`: called once the target is probed, before anything on it changes (no push,
    no service touched); it may raise to stop the restore. `omit_steps`: plan steps not run.
    `show_plan`: print the plan on stdout. `on_restored`: called after the steps ran, while the
    target is still connected, instead of the workstation's API certificate check and next steps.
    """

    mode: P.Mode | None = None
    probe_old_controllers: bool = True
    on_probed: Callable[[Staged], None] | None = None
    omit_steps: frozenset[str] = frozenset()
    show_plan: bool = True
    on_restored: Callable[[Staged, X.Outcome], None] | None = None


@dataclass(frozen=True)
class Run:
    """One fresh restore's inputs, shared by its stages."""

    connector: Connector
    request: RestoreRequest
    ui: UI
    work: Path
    stages: Stages
    mode: P.Mode
    started: float = field(default_factory=time.monotonic)

    def debug(self, done: str) -> None:
        """Say on the debug channel what was just done, with the seconds since the start."""
        self.ui.debug(f"+{time.monotonic() - self.started:.1f}s: {done}")


@dataclass(frozen=True)
class Fetched:
    """The fetch stage's result: the local archive and its ID; for a stored backup the controller
    holding it and, when the restore goes back onto that controller, the catalog path of its copy
    (nothing is pushed then)."""

    local: Path
    backup_id: str
    source: Host | None = None
    remote_copy: str | None = None


@dataclass(frozen=True)
class Probed:
    """The prepare stage's view of the target: connected and probed, with the plan's options."""

    target: Host
    backup: P.BackupFacts
    facts: TargetProbe
    options: P.RestoreOptions
    readdress: bool

    def staged(self, archive: Path) -> Staged:
        return Staged(self.target, archive, self.backup, self.facts)


@dataclass(frozen=True)
class Ready:
    """The prepare stage's result: the probed target, the backup's facts once verified, what is
    pushed and, when the archive is pushed early, that push (still under way, perhaps: its result is
    the SHA-256 of the bytes sent)."""

    probed: Probed
    backup: P.BackupFacts
    pushed: Prepared
    pushing: Future[str] | None
    push_token: str = ""
    """Names this run's early push on the target (restore-receive's marks, which untar-files waits
    for), so that nothing an earlier run left there is taken for it."""


def fresh_restore(
    connector: Connector,
    request: RestoreRequest,
    ui: UI,
    confirm: Confirm,
    work: Path,
    stages: Stages = Stages(),
) -> RestoreResult:
    """fetch → prepare → plan → show → confirm → execute → finish for a new restore (`stages`: what
    another verb changes in them); return what happened. Raise the stages' typed errors (services
    the restore stopped are started again first)."""
    run = Run(connector, request, ui, work, stages, restore_mode(request, stages))
    fetched = fetch(run)
    try:
        ready = prepare(run, fetched)  # closes the target when it fails
    except BaseException:
        if fetched.source is not None and request.target:  # the source is not the target
            fetched.source.close()
        raise
    target = ready.probed.target
    try:
        try:
            plan = make_plan(run, ready)
            if request.dry_run:
                return dry_run(ui, plan, ready)
            if stages.show_plan:
                show_plan(ui, plan)
            confirm_restore(request, confirm, ready)
        except BaseException:
            _discard_early(target, ready.pushing)  # nothing else changed on the target
            raise
        if stages.on_restored is not None:
            outcome = execute(run, fetched, ready, plan)
            stages.on_restored(ready.probed.staged(fetched.local), outcome)
            return RestoreResult(plan=plan, outcome=outcome)
        # Leaving the pool waits for a record under way, also when a step failed after it started.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finish") as pool:
            recording = Recording(pool, lambda: record_then_list(run, ready))
            outcome = execute(run, fetched, ready, plan, on_step=recording.on_step)
            return finish(run, ready, plan, outcome, confirm, recording)
    finally:
        target.close()
        if fetched.source is not None and fetched.source is not target:
            fetched.source.close()


def restore_mode(request: RestoreRequest, stages: Stages) -> P.Mode:
    """The stages' mode, else: dr for --archive, move with --target, same otherwise."""
    return stages.mode or (P.Mode.dr if request.archive else (P.Mode.move if request.target else P.Mode.same))


def fetch(run: Run) -> Fetched:
    """The fetch stage: the local --archive, or the stored backup downloaded (checksum-verified)
    from the controller holding it into the work dir."""
    request = run.request
    if request.archive:
        return Fetched(request.archive, request.archive.name)
    source, local, backup_id = fetch_stored(run.connector, request, run.ui, run.work)
    remote_copy = None if request.target else Catalog(source, request.backup_dir).archive_path(backup_id)
    return Fetched(local, backup_id, source, remote_copy)


def prepare(run: Run, fetched: Fetched) -> Ready:
    """The prepare stage: connect and probe the target while the archive is verified (one CPU-bound
    pass) in another process, write the re-addressing overlay meanwhile; with --yes push the archive
    meanwhile too, once the refusals that need no verified archive have passed. The push may still
    be under way when this returns (Ready.pushing): the plan, the journal and the steps that need no
    archive go on meanwhile. On failure, what an early push left on the target is removed and the
    target closed."""
    stamped = Checked.of_stamp(fetched.local)
    if stamped is not None:
        run.ui.info(f"{fetched.local.name} passed `verify` earlier and is unchanged: not verified "
                    "again; what is pushed must have its SHA-256")
    early: Future[str] | None = None
    token = secrets.token_hex(8)
    # Not a `with`: leaving it would wait for the push, which may outlive this stage.
    threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="push")
    with BackgroundVerify(fetched.local, sha1=False) if stamped is None else nullcontext(None) as verifying:
        try:
            # One pass over the local archive, while the target is connected and probed, keeps its
            # small members (read_slim); the backup's facts and the overlay then read only those:
            # the push no longer shares the CPUs with a second pass over the big members.
            slim = run.work / ".restore-slim-members.tar.gz"
            reading = threads.submit(read_slim, fetched.local, fetched.backup_id, slim, verifying)
            target = connect_target(run, fetched)
            try:
                probed = probe(run, fetched, target, reading)
                if run.request.yes and not run.request.dry_run and fetched.remote_copy is None:
                    early = push_early(threads, probed, fetched.local, token)
                overlay = (
                    prepare_overlay(slim, probed.backup, probed.facts, run.request.instance_id, run.work)
                    if probed.readdress else None
                )
                run.debug("re-addressing overlay written")
                checked = stamped or Checked.of_report(verified_report(verifying))
                run.debug("archive verified")
                ready = settle(probed, fetched.local, checked, overlay, early, token)
            except BaseException:
                _discard_early(target, early)
                target.close()
                raise
            finally:
                slim.unlink(missing_ok=True)
        except BaseException:
            threads.shutdown(wait=True)  # the archive's reading (and a push) end before the error
            raise
    threads.shutdown(wait=False)  # a push under way goes on: the upload step waits for it
    return ready


def connect_target(run: Run, fetched: Fetched) -> Host:
    """The target: --target connected, else the controller the backup came from."""
    if fetched.source is not None and not run.request.target:
        return fetched.source
    return connect_one(run.connector, str(run.request.target), run.ui)


def probe(run: Run, fetched: Fetched, target: Host, reading: Future[P.BackupFacts]) -> Probed:
    """Given the backup's facts being read (read_or_report), refuse a target with an unfinished
    restore, probe the target, call the stages' on_probed hook and decide whether the restore
    re-addresses. An archive that cannot be read is the error raised first, then an unfinished
    restore. The journal is read on a channel of its own while the probe runs (both only read)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal") as pool:
        unfinished = pool.submit(refuse_unfinished, target)
        try:
            backup, facts = probe_target(target, reading.result, run.request,
                                         old_controllers=run.stages.probe_old_controllers)
        except BaseException:
            reading.result()
            unfinished.result()
            raise
        try:
            unfinished.result()
        except JujuBackupError:
            reading.result()
            raise
    run.debug(f"target {target.name} probed")
    if run.stages.on_probed is not None:
        run.stages.on_probed(Staged(target, fetched.local, backup, facts))
    readdress = needs_readdress(run.mode, backup, facts)
    options = P.RestoreOptions(
        mode=run.mode, force=run.request.force, allow_downgrade=run.request.allow_downgrade,
        readdress=readdress,
    )
    return Probed(target, backup, facts, options, readdress)


def push_early(threads: ThreadPoolExecutor, probed: Probed, local: Path, token: str) -> Future[str]:
    """Check the preconditions that need no verified archive (its packed size standing in for the
    unpacked one); start pushing the archive to the target on `threads`, named `token` there."""
    provisional = replace(probed.backup, unpacked_size=probed.backup.archive_size)
    P.check_preconditions(provisional, probed.facts, probed.options, target_facts_peers(probed.facts))
    return threads.submit(X.push_early, probed.target, local, token)


def settle(
    probed: Probed, local: Path, checked: Checked, overlay: Overlay | None, early: Future[str] | None,
    token: str = "",
) -> Ready:
    """Given the verification's summary, return the backup's final facts and what is pushed; with
    an early push, check the preconditions again with the real sizes (the upload step waits for the
    push)."""
    backup = replace(probed.backup, unpacked_size=checked.unpacked_size, has_oplog=checked.has_oplog)
    if early is not None:
        P.check_preconditions(backup, probed.facts, probed.options, target_facts_peers(probed.facts))
    return Ready(probed, backup, prepared(local, checked, overlay), early, token if early else "")


def make_plan(run: Run, ready: Ready) -> P.Plan:
    """The plan stage: restore/plan.py's plan for these facts, without the stages' omitted steps
    (a dry run plans without refusing: dry_run shows the refusal)."""
    facts = ready.probed.facts
    plan = P.make_plan(
        ready.backup, facts, ready.probed.options, peers=target_facts_peers(facts),
        changes=ready.pushed.changes, harvest=ready.pushed.harvest, check=not run.request.dry_run,
    )
    return replace(plan, steps=tuple(s for s in plan.steps if s.name not in run.stages.omit_steps))


def dry_run(ui: UI, plan: P.Plan, ready: Ready) -> RestoreResult:
    """Show the plan; raise the refusal a real run would raise, else return the dry run's result."""
    probed = ready.probed
    refusal = dry_run_refusal(ready.backup, probed.facts, probed.options, target_facts_peers(probed.facts))
    # The refusal raised is printed once, by main(): not among the plan's warnings too.
    show_plan(ui, plan, omit=f"refused: {refusal.message.split(' (and ')[0]} " if refusal else None,
              as_data=refusal is not None)
    if refusal is not None:
        raise refusal
    return RestoreResult(plan=plan, dry_run=True)


def confirm_restore(request: RestoreRequest, confirm: Confirm, ready: Ready) -> None:
    """Return when --yes or the operator confirms; raise DeclinedError (exit 6) otherwise."""
    if not request.yes and not confirm(f"restore {ready.backup.backup_id} onto {ready.probed.target.name}?"):
        raise DeclinedError("restore not confirmed: nothing changed",
                            hint="give --yes to restore without asking")


def execute(run: Run, fetched: Fetched, ready: Ready, plan: P.Plan,
            on_step: X.StepHook | None = None) -> X.Outcome:
    """The execute stage: journal the params on the target, run the plan's steps (calling `on_step`
    with each step's name as it starts); return the outcome, its seconds led by the preparation's."""
    params = restore_params(run, ready, plan)
    X.start_journal(ready.probed.target, params)
    prepare_seconds = round(time.monotonic() - run.started, 2)
    pushed = ready.pushed
    outcome = run_execution(
        ready.probed.target,
        params,
        X.Upload(pushed.archive, pushed.overlay, fetched.remote_copy, pushing=ready.pushing,
                 push_token=ready.push_token, stop_during_push=serves_nothing_to_keep(ready)),
        X.Journal(exists=True),
        run.ui,
        on_step,
    )
    outcome.seconds = {"prepare": prepare_seconds, **outcome.seconds}  # verify, probe, plan
    return outcome


def serves_nothing_to_keep(ready: Ready) -> bool:
    """Given the probed target, return True when stopping it early costs its users nothing: no
    juju-db or jujud runs there, or it is a freshly bootstrapped controller of another controller
    (its state goes anyway). False for a controller with models: it keeps serving during the push."""
    facts = ready.probed.facts
    return not facts.live_controller or facts.freshly_bootstrapped(ready.backup.controller_uuid)


def restore_params(run: Run, ready: Ready, plan: P.Plan) -> X.Params:
    """The params journaled on the target: everything the steps (and a later --resume) need."""
    backup, facts, pushed = ready.backup, ready.probed.facts, ready.pushed
    return X.Params(
        backup_id=backup.backup_id,
        mode=run.mode.value,
        profile=str(facts.profile),
        machine_id=backup.machine_id,
        model_uuid=backup.model_uuid,
        new_address=facts.address,
        state_port=backup.state_port,
        api_port=backup.api_port,
        steps=plan.step_names(),
        sha256=pushed.sha256,
        size=pushed.size,
        install=plan.install_services,
        overlay_sha256=pushed.overlay_sha256,
        overlay_size=pushed.overlay_size,
        harvest_modes=tuple((h.model_uuid, h.model, h.was) for h in plan.harvest),
        backup_dir=run.request.backup_dir,
        ca_sha256=apiprobe.ca_fingerprint(backup.ca_cert) if backup.ca_cert else "",
        mongod_version=facts.mongo_version or "",
        shell_version=facts.shell_version,
        tools_version=facts.tools_version,
        oplog=backup.has_oplog,
        ca_cert=backup.ca_cert,
    )


class Recording:
    """The restore record and the machine list (record_then_list), started on `pool` as the cleanup
    step starts: verify passed, and neither changes what cleanup or the API check read, so they run
    beside both. `on_step` is the execute stage's step hook."""

    def __init__(self, pool: ThreadPoolExecutor, work: Callable[[], repoint_rules.Inventory | None]) -> None:
        self._pool, self._work = pool, work
        self._future: Future[repoint_rules.Inventory | None] | None = None

    def on_step(self, step: str) -> None:
        """Given the name of the step starting, start the record if it is the cleanup step."""
        if step == P.CLEANUP:
            self.started()

    def started(self) -> Future[repoint_rules.Inventory | None]:
        """Return the record's future, starting it now if no cleanup step started it."""
        if self._future is None:
            self._future = self._pool.submit(self._work)
        return self._future


def record_then_list(run: Run, ready: Ready) -> repoint_rules.Inventory | None:
    """Leave the restore record on the target, then (when the agents are to be re-pointed: the
    address changed) return its machine list, which reads the record; else None."""
    backup, target, facts = ready.backup, ready.probed.target, ready.probed.facts
    record_restore(target, backup, demoted_of(backup))
    if not repoints(run, ready):
        return None
    shell = ((profiles.profile_named(facts.profile).mongo_shell, facts.shell_version) if facts.profile
             else ("", ""))
    return list_machines(target, shell)


def demoted_of(backup: P.BackupFacts) -> tuple[str, ...]:
    """The machine ids of the backup's other controllers, which the restore demoted."""
    return tuple(c.machine_id for c in backup.others if c.machine_id != "?")


def repoints(run: Run, ready: Ready) -> bool:
    """Whether the agents are re-pointed after this restore: the address changed and --repoint is on."""
    return ready.probed.readdress and run.request.repoint is not None


def finish(run: Run, ready: Ready, plan: P.Plan, outcome: X.Outcome, confirm: Confirm,
           recording: Recording) -> RestoreResult:
    """The finish stage: check the restored API's certificate, say the next steps, update the
    client config when asked, wait for the restore record (`recording`, on a second channel of the
    target's connection), re-point the agents when the address changed. An API check that fails is
    the error raised, once the record is written."""
    request, backup, target = run.request, ready.backup, ready.probed.target
    address = ready.probed.facts.address
    recorded = recording.started()
    try:
        check_api(outcome, target, backup, address, run.ui)
    except BaseException:
        with suppress(Exception):
            recorded.result()
        raise
    steps = next_steps(backup.api_port, address, plan.harvest)
    result = RestoreResult(plan=plan, outcome=outcome, next_steps=steps)
    if request.update_client_config:
        update_client_config(
            backup.controller_uuid, address, backup.api_port, run.ui, confirm, yes=request.yes
        )
    inventory = recorded.result()
    if repoints(run, ready):
        result.repointed = repoint_agents(run.connector, target, request, run.ui, demoted_of(backup),
                                          inventory)
    return result


def record_restore(target: Host, backup: P.BackupFacts, demoted: tuple[str, ...]) -> None:
    """Leave on the restored controller the record of the controllers this restore demoted
    (repoint.RESTORE_RECORD), so that `repoint` from a workstation without this run's state file
    skips them too. Raise RemoteStepError (exit 4) if it cannot be written."""
    record = repoint_rules.restore_record(backup.controller_uuid, backup.machine_id, demoted)
    target.run("restore-record", scripts.render("restore-record", path=repoint_rules.RESTORE_RECORD,
                                                record=record))


def repoint_agents(
    connector: Connector, target: Host, request: RestoreRequest, ui: UI, demoted: tuple[str, ...] = (),
    inventory: repoint_rules.Inventory | None = None,
) -> RepointResult:
    """The last stage of a restore onto a new address: point every agent of the model at it
    (operations/repoint.py). The backup's other controllers, which the restore demoted (`demoted`,
    machine ids), are listed as such and not re-pointed. Machines left are in the result (the CLI
    exits EXIT_PARTIAL)."""
    assert request.repoint is not None
    ui.info("re-pointing the model's agents at the restored controller")
    asked = replace(request.repoint, target=request.target or target.name, demoted=demoted)
    return repoint_from(connector, target, asked, ui, inventory)


def _discard_early(target: Host, early: Future[str] | None) -> None:
    """When the restore stops before starting, remove what an early push left on the target."""
    if early is None:
        return
    with suppress(Exception):
        early.result()
    with suppress(JujuBackupError):
        X.discard_journal(target)


def run_execution(host: Host, params: X.Params, upload: X.Upload, journal: X.Journal, ui: UI,
                  on_step: X.StepHook | None = None) -> X.Outcome:
    """Execute the steps with progress lines (and `on_step` called with each step's name as it
    starts); return the Outcome."""

    def step(name: str) -> None:
        ui.info(f"step {name}")
        if on_step is not None:
            on_step(name)

    with ui.transfer("push archive", params.size, journal.archive_bytes) as advance:
        return X.execute(host, params, upload=upload, journal=journal, on_step=step, progress=advance)


def check_api(outcome: X.Outcome, target: Host, backup: P.BackupFacts, address: str, ui: UI) -> None:
    """Check through `target`'s SSH connection that the restored API at `address` serves a
    certificate chaining to the backup's CA (agent.conf `cacert`; Juju serves a fresh `controllerip`
    leaf, not server.pem: apiprobe.py); record it in the outcome's verify findings.
    Raise VerifyError (exit 8) if nothing answers TLS there or the certificate does not chain."""
    if not backup.ca_cert:
        raise VerifyError(
            f"the backup's agent.conf has no cacert: cannot check the API at {address}",
            hint="check the controller by hand: juju show-controller",
        )
    cert = apiprobe.probe_api(target, address, backup.api_port, backup.ca_cert)
    outcome.verify["api-certificate"] = cert.as_dict()
    if not cert.names_address:
        ui.warn(f"the API certificate chains to the controller CA but does not name {address}")


@contextmanager
def work_dir(given: Path | None) -> Iterator[Path]:
    """Yield the work dir: `given` (created 0700 when missing), else a temp dir removed afterwards."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="jujubackup-restore-") as tmp:
        yield Path(tmp)
