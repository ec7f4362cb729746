"""Run a restore plan on the target through the Host seam, journaling each step on the target.

The journal lives in JOURNAL_DIR on the target (0700): `params.json` (everything needed to resume
without the workstation's state), `steps/<step>.started|.done` (written by the step scripts
themselves, so a step finished while the client was gone still counts), `stopped` (the units the
restore stopped, recorded once), `archive.tar.gz`, `unpacked/`, `snapshot.tar`.

Every exit path restarts or reports the services the restore stopped: each step script restarts them
in its EXIT trap when it fails; a failure outside a script runs `restore-restart`; when the host
cannot be reached any more the error says which units are stopped and how to continue.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jujubackup import profiles, scripts
from jujubackup.catalog import lock_error
from jujubackup.errors import ConnectError, JujuBackupError, RemoteStepError, VerifyError
from jujubackup.host.base import Host
from jujubackup.profiles import Profile
from jujubackup.remote_codes import RC_LOCKED, RC_NOT_VERIFIED
from jujubackup.restore import plan as P
from jujubackup.restore import units
from jujubackup.restore.params import Params
from jujubackup.restore.units import snapshot_paths
from jujubackup.transfer import FileSource, HashingSource

JOURNAL_DIR = "/var/lib/jujubackup-restore"
ARCHIVE = f"{JOURNAL_DIR}/archive.tar.gz"
OVERLAY = f"{JOURNAL_DIR}/overlay.tar.gz"
DETACHED_STEPS = frozenset({P.UPLOAD, P.SNAPSHOT, P.UNTAR, P.LOAD_DB})
SCRIPT_OF = {
    P.UPLOAD: "restore-stage",
    P.STOP: "restore-stop",
    P.SNAPSHOT: "restore-snapshot",
    P.UNTAR: "restore-untar",
    P.INSTALL: "restore-install",
    P.FRESH_DB: "restore-fresh-db",
    P.LOAD_DB: "restore-load-db",
    P.START: "restore-start",
    P.VERIFY: "restore-verify",
    P.CLEANUP: "restore-cleanup",
}
AHEAD_OF_PUSH = (P.STOP, P.SNAPSHOT)
"""Steps that need no archive: while an early push is still under way they run before upload."""
AHEAD_OF_ROOT = (P.UNTAR, P.INSTALL, P.FRESH_DB)
"""Steps that need only root.tar and the overlay: while the rest of an early push still arrives they
run once root.tar has (restore-receive's root.ready; restore-untar waits for it)."""
VERIFY_WAIT_SECONDS = 90
DETACHED_POLL = 0.1
"""Seconds between polls of a detached step (each poll is one exec on the open SSH connection)."""


@dataclass(frozen=True)
class Journal:
    """The restore journal as read on the target."""

    exists: bool
    done: frozenset[str] = frozenset()
    stopped: tuple[str, ...] = ()
    params: Params | None = None
    snapshot: bool = False
    archive_bytes: int = 0


@dataclass(frozen=True)
class Upload:
    """Local files the upload step pushes: the archive and the optional re-addressing overlay."""

    archive: Path | None
    overlay: Path | None = None
    remote_copy: str | None = None
    """The same archive already on the target (restore ID onto its own controller): copied there."""
    pushing: Future[str] | None = None
    push_token: str = ""
    """Names the early push on the target: restore-receive's root.tar mark that untar-files waits for."""
    """The archive is pushed early (push_early), unpacked as it arrives and hashed as it is sent: the
    upload step waits for that push (its result: the SHA-256 sent), then pushes only the overlay."""
    stop_during_push: bool = False
    """The target serves nothing worth keeping up while the archive travels (a spare, or a freshly
    bootstrapped controller of another controller): stop-services and snapshot may overlap the push.
    A controller holding models keeps serving until its archive is there (no longer downtime)."""


@dataclass
class Outcome:
    """What the execution did: steps run and skipped, the verify findings."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    verify: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall-clock seconds of each step that ran (what to look at when a restore is slow)."""


StepHook = Callable[[str], None]


def read_journal(host: Host) -> Journal:
    """Given a connected target, return its restore journal (exists=False when there is none)."""
    doc = host.run("restore-journal", scripts.render("restore-journal", journal_dir=JOURNAL_DIR)).json()
    params = Params.from_dict(doc["params"]) if doc.get("params") else None
    return Journal(
        exists=bool(doc.get("journal")),
        done=frozenset(str(s) for s in doc.get("done") or []),
        stopped=tuple(str(u) for u in doc.get("stopped") or []),
        params=params,
        snapshot=bool(doc.get("snapshot")),
        archive_bytes=int(doc.get("archive_bytes") or 0),
    )


def init_journal_dir(host: Host) -> None:
    """Create the (0700) journal dir on the target."""
    host.run("restore-journal-init", scripts.render("restore-journal-init", journal_dir=JOURNAL_DIR))


def discard_journal(host: Host) -> None:
    """Remove the journal dir (and what an early push put there) from a target the restore never
    changed otherwise."""
    host.run("restore-journal-discard", scripts.render("restore-journal-discard", journal_dir=JOURNAL_DIR))


def push_early(host: Host, archive: Path, token: str = "") -> str:
    """Push `archive` into a new journal dir before the plan is final (only with --yes, once the
    refusals that need no archive verification passed), unpacked on the target as it arrives
    (restore-receive); return the SHA-256 of the bytes sent, which the caller compares with the
    verified one before the stage step uses what was unpacked. The caller discards the journal dir
    if the restore then stops before starting."""
    digest = hashlib.sha256()
    with archive.open("rb", buffering=0) as fh:
        text = scripts.render("restore-receive", journal_dir=JOURNAL_DIR, push_token=token)
        host.run_stream("restore-receive", text, HashingSource(fh, digest))
    return digest.hexdigest()


def start_journal(host: Host, params: Params) -> None:
    """Create the journal dir on the target and save params.json (0600)."""
    init_journal_dir(host)
    data = params.to_json().encode()
    host.put(io.BytesIO(data), f"{JOURNAL_DIR}/params.json", mode=0o600, size=len(data))


def execute(
    host: Host,
    params: Params,
    *,
    upload: Upload,
    journal: Journal,
    on_step: StepHook,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Given a target with a started journal, run every step of `params` not yet done, in order.

    Return the Outcome. Raise the step's typed error (RemoteStepError exit 4, VerifyError exit 8 for a
    failed verification) after making sure the stopped services run again (or saying they do not).
    When only the steps run ahead of an early push had run (the push failed, or its bytes were not
    the verified ones), the target is left as it was: its services run again and the journal is
    removed, so that the restore can simply be run again.
    """
    outcome = Outcome()
    stopped: list[str] = []
    order = step_order(params.steps, upload)
    early_root = runs_before(order, P.UNTAR, P.UPLOAD) and P.UNTAR not in journal.done
    try:
        if early_root and upload.overlay is not None:
            push_overlay(host, upload.overlay)
        for step in order:
            if step in journal.done:
                outcome.skipped.append(step)
                continue
            if early_root and step in AHEAD_OF_ROOT:
                raise_if_push_failed(host, upload)
            on_step(step)
            started = time.monotonic()
            result = run_step(host, params, step, upload=upload, journal=journal, progress=progress,
                              early_root=early_root)
            outcome.seconds[step] = round(time.monotonic() - started, 2)
            outcome.ran.append(step)
            if step == P.VERIFY:
                outcome.verify = result
            if step == P.STOP:
                stopped = [str(u) for u in result.get("stopped") or []]
    except ConnectError as err:
        raise ConnectError(
            f"{err.message} — the restore on {host.name} stopped mid-way",
            hint=f"reconnect and run `jujubackup restore --resume --target {host.name}`; services the "
            "restore stopped stay stopped until then (or `--rollback` if the host had state before)",
        ) from err
    except (JujuBackupError, KeyboardInterrupt) as err:
        active = restart_stopped(host, params)
        if (isinstance(err, JujuBackupError) and upload.pushing is not None
                and set(outcome.ran) <= set(AHEAD_OF_PUSH) and active is not None
                and set(stopped) <= set(active)):
            undo_ahead_of_push(host, upload.pushing, err, stopped)
        raise
    return outcome


def undo_ahead_of_push(host: Host, pushing: Future[str], err: JujuBackupError,
                       stopped: list[str]) -> None:
    """Given the error that stopped a restore after only the steps run ahead of its early push (which
    changed nothing but stop the services `stopped`, now running again), wait for the push to end,
    remove the journal (the snapshot, the record of the stopped units, what the push left) and say so
    in the error's hint: the target is as it was. Leave the journal if it cannot be removed."""
    with contextlib.suppress(Exception):
        pushing.result()
    try:
        discard_journal(host)
    except (JujuBackupError, OSError):
        return
    services = (f"the services it stopped while the archive was pushed ({', '.join(stopped)}) run "
                "again" if stopped else "it stopped no service")
    err.hint = (f"nothing of the restore is left on {host.name}: {services} and its journal is "
                "removed; fix the cause and run the restore again")


def step_order(steps: tuple[str, ...], upload: Upload) -> tuple[str, ...]:
    """Given the plan's steps, return the order they run in: the plan's, except that while an early
    push is still under way the steps that need no archive (AHEAD_OF_PUSH: stop-services, snapshot)
    and then those that need only its root.tar (AHEAD_OF_ROOT: untar-files, install-services,
    fresh-db) run first, so that they overlap the push instead of following it. Each step is
    journaled on its own, so a --resume runs what is not done in the plan's order whatever ran
    first. Only when `upload.stop_during_push`: a controller with models is not stopped for the
    push's duration."""
    if (not upload.stop_during_push or upload.pushing is None or upload.pushing.done()
            or P.UPLOAD not in steps):
        return steps
    # the root.tar steps wait for the push's own mark: only a push named by a token makes one
    early = AHEAD_OF_PUSH + (AHEAD_OF_ROOT if upload.push_token else ())
    ahead = tuple(s for s in steps if s in early)
    return ahead + tuple(s for s in steps if s not in ahead)


def runs_before(order: tuple[str, ...], first: str, second: str) -> bool:
    """Given an order of steps, return whether `first` is in it ahead of `second` (both in it)."""
    return first in order and second in order and order.index(first) < order.index(second)


def push_overlay(host: Host, overlay: Path) -> None:
    """Push the re-addressing overlay (small) into the journal dir."""
    with overlay.open("rb") as source:
        host.put(source, OVERLAY, mode=0o600, size=overlay.stat().st_size)


def raise_if_push_failed(host: Host, upload: Upload) -> None:
    """Given an early push, raise its error (push_error) when it has already failed: the steps that
    need its root.tar do not start."""
    pushing = upload.pushing
    if pushing is not None and pushing.done():
        err = pushing.exception()
        if isinstance(err, RemoteStepError):
            raise push_error(host, err) from err
        if err is not None:
            raise err


def push_error(host: Host, err: RemoteStepError) -> RemoteStepError:
    """Given restore-receive's failure, return the error the restore reports for it (the steps run
    ahead of the push are journaled)."""
    return RemoteStepError(
        err.script, err.returncode, err.stderr_tail, host=host.name,
        message=f"pushing the archive to {host.name} failed (exit {err.returncode}): "
        f"{_cause(err.stderr_tail)}",
        hint="the services the restore stopped run again; "
        f"`jujubackup restore --resume --archive FILE --target {host.name}` pushes it again "
        "(or `--rollback` to the snapshot if the host had state)",
    )


def run_step(
    host: Host,
    params: Params,
    step: str,
    *,
    upload: Upload,
    journal: Journal,
    progress: Callable[[int], None] | None = None,
    early_root: bool = False,
) -> dict[str, Any]:
    """Given one step name, run it on the target and return its JSON result. With `early_root` the
    AHEAD_OF_ROOT steps run before the upload step (the early push still arriving, the overlay
    already pushed): untar-files waits for root.tar and reads the overlay's root-overlay.tar itself.

    Raise RemoteStepError when its script fails (the push's error when untar-files found the push
    ended before root.tar), VerifyError when `verify` finds a problem or the pushed archive is not the
    verified one (the AHEAD_OF_ROOT steps that used it are marked not done, so a --resume runs them
    again), JujuBackupError when the upload step has no archive to push.
    """
    values = step_values(params, step)
    if step == P.UNTAR and early_root:
        values.update(wait_root=True, push_token=upload.push_token, overlay_sha256=params.overlay_sha256)
    if step == P.UPLOAD:
        digest = pushed_digest(host, params, upload, journal, progress, early_root)
        values["check_sha256"] = digest is None
        values["use_stream"] = upload.pushing is not None
    text = scripts.render(SCRIPT_OF[step], **values)
    try:
        # what restore-receive unpacked needs only the small overlay on top: no detached job
        attached = step == P.UPLOAD and values.get("use_stream") is True
        if step in DETACHED_STEPS and not attached:
            result = host.run_detached(SCRIPT_OF[step], text, timeout=None, poll=DETACHED_POLL)
        else:
            result = host.run(SCRIPT_OF[step], text, timeout=900)
    except RemoteStepError as err:
        if err.returncode == RC_LOCKED:
            raise lock_error(err, host.name) from err
        if step == P.UNTAR and early_root and upload.pushing is not None:
            with contextlib.suppress(Exception):
                upload.pushing.result()  # restore-untar stops waiting only once restore-receive ended
            raise_if_push_failed(host, upload)
        if step == P.VERIFY and err.returncode == RC_NOT_VERIFIED:
            raise VerifyError(
                f"the restored controller on {host.name} did not verify: {_last_line(err.stderr_tail)}",
                hint=verify_hint(err.stderr_tail, params, host.name),
            ) from err
        raise RemoteStepError(
            err.script,
            err.returncode,
            err.stderr_tail,
            host=host.name,
            message=f"restore step {step} on {host.name} failed (exit {err.returncode}): "
            f"{_cause(err.stderr_tail)}",
            hint="the services the restore stopped run again; fix the cause, then "
            f"`jujubackup restore --resume --target {host.name}`, or `--rollback` to the snapshot "
            "if the host had state",
        ) from err
    doc = result.json()
    return doc if isinstance(doc, dict) else {}


def pushed_digest(host: Host, params: Params, upload: Upload, journal: Journal,
                  progress: Callable[[int], None] | None, early_root: bool) -> str | None:
    """Push the archive (push_archive) and return the SHA-256 of the bytes pushed, or None.

    Raise VerifyError when it is not the verified archive's: the pushed copy is removed and, with
    `early_root`, the AHEAD_OF_ROOT steps that used its root.tar are marked not done.
    """
    digest = push_archive(host, params, upload, journal, progress, overlay_pushed=early_root)
    if digest is not None and digest != params.sha256:
        discard_pushed(host, undo=AHEAD_OF_ROOT if early_root else ())  # a --resume pushes it again
        raise VerifyError(
            f"the archive pushed to {host.name} has SHA-256 {digest}, expected {params.sha256}",
            hint="the transfer was damaged and the pushed copy removed: "
            f"`restore --resume --archive FILE --target {host.name}` pushes it again",
        )
    return digest


def push_archive(
    host: Host,
    params: Params,
    upload: Upload,
    journal: Journal,
    progress: Callable[[int], None] | None,
    overlay_pushed: bool = False,
) -> str | None:
    """Push the overlay (small, first; not again when `overlay_pushed`) and the archive to the
    journal dir; the archive push appends to what an interrupted push left. Return the archive's
    SHA-256: as this workstation hashed the file while sending it (an early push, push_early) or as
    the host hashed the file it wrote (None when it was copied on the host: the stage step hashes it).

    Raise JujuBackupError when no local archive is given (a resume before the upload finished).
    """
    if upload.overlay is not None and not overlay_pushed:
        push_overlay(host, upload.overlay)
    if upload.pushing is not None:
        try:
            return upload.pushing.result()
        except RemoteStepError as err:  # restore-receive failed: the steps run ahead of it are journaled
            raise push_error(host, err) from err
    if upload.remote_copy is not None:
        host.run("restore-copy", scripts.render("restore-copy", source=upload.remote_copy, archive=ARCHIVE))
        return None
    if upload.archive is None:
        raise JujuBackupError(
            "the archive was not completely pushed to the target before the interruption",
            hint="resume with the same archive: `restore --resume --archive FILE --target HOST`",
        )
    offset = journal.archive_bytes if 0 < journal.archive_bytes <= params.size else 0
    digest = _push_from(host, upload.archive, offset, params.size, progress)
    if offset and digest is not None and digest != params.sha256:
        # what an earlier push left (full-size or not) is no prefix of this archive: push all of it
        # again, instead of failing every --resume the same way until the journal dir is removed
        digest = _push_from(host, upload.archive, 0, params.size, progress)
    return digest


def _push_from(
    host: Host, archive: Path, offset: int, size: int, progress: Callable[[int], None] | None
) -> str | None:
    """Given the local archive, write its bytes from `offset` on to the target's pushed archive
    (truncated there); return the SHA-256 of the whole file as the host computed it, or None."""
    digest: list[str] = []
    with archive.open("rb", buffering=0) as source:
        source.seek(offset)  # through OpenSSH, `ssh` reads the file itself from here (FileSource)
        host.put(FileSource(source), ARCHIVE, offset=offset, mode=0o600, progress=progress,
                 on_sha256=digest.append, size=size - offset)
    return digest[0] if digest else None


def discard_pushed(host: Host, undo: tuple[str, ...] = ()) -> None:
    """Remove the pushed archive from the target's journal dir (best effort): it did not match. The
    steps `undo` used what it unpacked: they are marked not done (a --resume runs them again)."""
    with contextlib.suppress(JujuBackupError, OSError):
        text = scripts.render("restore-discard-push", archive=ARCHIVE, journal_dir=JOURNAL_DIR,
                              undo_steps=list(undo))
        host.run("restore-discard-push", text)


def restart_stopped(host: Host, params: Params) -> list[str] | None:
    """Start the services the restore stopped (best effort over a still-working connection); return
    the recorded units that are active now (None when that is unknown)."""
    try:
        text = scripts.render("restore-restart", **step_values(params, "restart"))
        doc = host.run("restore-restart", text, timeout=300).json()
    except (JujuBackupError, OSError, ValueError):
        return None
    active = doc.get("active") if isinstance(doc, dict) else None
    return [str(u) for u in active] if isinstance(active, list) else None


def rollback(host: Host, journal: Journal) -> dict[str, Any]:
    """Given the target's journal, return the host to its pre-restore snapshot; return the result.

    Raise JujuBackupError when there is no journal/snapshot to roll back to.
    """
    if not journal.exists or journal.params is None:
        raise JujuBackupError(f"no restore journal on {host.name}: nothing to roll back", exit_code=5)
    if not journal.snapshot:
        raise JujuBackupError(
            f"the restore journal on {host.name} has no snapshot (the host had no state before)",
            hint="nothing to roll back to: re-run the restore, or `--resume` it",
            exit_code=6,
        )
    text = scripts.render("restore-rollback", **step_values(journal.params, "rollback"))
    doc = host.run_detached("restore-rollback", text).json()
    return doc if isinstance(doc, dict) else {}


def step_values(params: Params, step: str) -> dict[str, Any]:
    """Given the params and a step name, return the template values of that step's script."""
    profile = profiles.profile_named(params.profile)
    values: dict[str, Any] = {
        "journal_dir": JOURNAL_DIR,
        "step": step,
        "backup_id": params.backup_id,
        "db_service": profile.db_service,
        "machine_id": params.machine_id,
        "mongo_shell": profile.mongo_shell,
        "shell_version": params.shell_version,
        "state_port": params.state_port,
        "backup_dir": params.backup_dir,
    }
    extra: dict[str, dict[str, Any]] = {
        P.UPLOAD: {
            "sha256": params.sha256,
            "overlay_sha256": params.overlay_sha256,
            "check_sha256": True,
            "use_stream": False,
        },
        P.SNAPSHOT: {"snapshot_paths": snapshot_paths(profile)},
        "rollback": {"snapshot_paths": snapshot_paths(profile)},
        P.INSTALL: {"files": unit_files(profile, params),
                    "snap_configpath": f"{profile.mongo_dir}/juju-db.config" if profile.snap else ""},
        P.FRESH_DB: {
            "db_path": profile.db_path,
            "server_pem": profile.server_pem,
            "shared_secret": profile.shared_secret,
            "new_address": params.new_address,
            "extra_dirs": [f"{profile.mongo_dir}/logs"] if profile.mongo_dir != profiles.DATA_DIR else [],
            "oplog": params.oplog,
            "mongod_version": params.mongod_version,
        },
        P.LOAD_DB: {
            "mongorestore": profile.mongorestore,
            # mongodump's version stands for mongorestore's only where both are of one install (the
            # same dir: one mongo-tools build); else load-db asks mongorestore itself
            "tools_version": params.tools_version if same_install(profile) else "",
            "mongod_version": params.mongod_version,
            "batch_size": 100,
        },
        P.VERIFY: {
            "api_port": params.api_port,
            "state_port": params.state_port,
            "new_address": params.new_address,
            "model_uuid": params.model_uuid,
            "wait_seconds": VERIFY_WAIT_SECONDS,
        },
    }
    values.update(extra.get(step, {}))
    return values


def same_install(profile: Profile) -> bool:
    """Given a profile, return whether its mongorestore and mongodump live in one dir (one install of
    mongo-tools, so one version)."""
    return Path(profile.mongorestore).parent == Path(profile.mongodump).parent


def unit_files(profile: Profile, params: Params) -> list[dict[str, Any]]:
    """Given the profile and params, return the files install-services writes (restore/units.py)."""
    return units.unit_files(
        profile, params.machine_id, params.state_port, params.mongod_version, params.ca_cert
    )


def verify_hint(stderr: str, params: Params, host: str) -> str:
    """Given restore-verify's stderr, return the hint for a failed verification, from what the
    script found: which services are active or not, the API, the peergrouper complaint, the DB."""
    found = dict(re.findall(r"\b(db|jujud|api|address_in_db|replset_ok|members|voters)=(\S*)", stderr))
    db_unit = profiles.profile_named(params.profile).db_service
    jujud = f"jujud-machine-{params.machine_id}"
    states = [f"{db_unit} is {found.get('db', 'unknown')}", f"{jujud} is {found.get('jujud', 'unknown')}"]
    if found.get("api") == "false":
        states.append(f"nothing answers on API port {params.api_port}")
    if found.get("replset_ok") == "false" and found.get("api") != "false":
        states.append(
            f"the replica set is not {params.new_address}:{params.state_port} alone as PRIMARY with "
            f"machine {params.machine_id} the only voter (members: {found.get('members') or 'none'}, "
            f"voters: {found.get('voters') or 'none'})"
        )
    if "peergrouper='" in stderr and "peergrouper=''" not in stderr:
        states.append("jujud's log has a peergrouper complaint")
    if found.get("address_in_db") == "false":
        states.append(f"the DB does not show {params.new_address} for machine {params.machine_id}")
    log = f"/var/log/juju/machine-{params.machine_id}.log"
    return (
        f"on {host}: {'; '.join(states)}. See {log} and `journalctl -u {jujud}` there; "
        f"`jujubackup restore --rollback --target {host}` returns a host that had state to its "
        "pre-restore snapshot (a fresh machine has none: fix the cause and restore again)"
    )


def _cause(stderr: str) -> str:
    """Return the last stderr line that says why a step failed (not the restart notices)."""
    # lib/restore's trap line and lib/services' lines for each unit it started again
    noise = ("started again the services the restore stopped", "progress: restarting ",
             "jujubackup-restarted: ", "jujubackup-restart-failed: ")
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and not any(n in ln for n in noise)]
    return lines[-1] if lines else "no detail"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"
