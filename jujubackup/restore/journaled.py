"""`restore --resume` and `restore --rollback`: continue or undo the restore journaled on a target."""

from __future__ import annotations

from pathlib import Path

from jujubackup import apiprobe
from jujubackup.connect import connect_first, connect_one
from jujubackup.errors import NotFoundError, RefusedError
from jujubackup.host.base import Connector, Host
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.restore.fresh import run_execution
from jujubackup.restore.gather import read_backup
from jujubackup.restore.request import RestoreRequest, RestoreResult
from jujubackup.restore.show import next_steps
from jujubackup.ui import UI


def connect_journaled(connector: Connector, request: RestoreRequest, ui: UI) -> Host:
    """Connect to the host a journaled restore ran on: --target, else the first of the -H hosts
    (or -c's controllers) holding a restore journal - as `restore ID` restores onto the -H
    controller. Raise NotFoundError (5) when none holds one, UsageError without any host."""
    if request.target:
        return connect_one(connector, request.target, ui)

    def journaled(host: Host) -> bool:
        if not X.read_journal(host).exists:
            raise NotFoundError(f"no restore journal on {host.name}")
        return True

    return connect_first(connector, ui, journaled)


def resume(connector: Connector, request: RestoreRequest, ui: UI) -> RestoreResult:
    """Continue a journaled restore on the target from its first step not done."""
    target = connect_journaled(connector, request, ui)
    try:
        journal = X.read_journal(target)
        if not journal.exists or journal.params is None:
            raise NotFoundError(f"no unfinished restore is journaled on {target.name}")
        params = journal.params
        check_resume_backup(params, request, target.name)
        if request.archive is not None:
            check_resume_archive(params, read_backup(request.archive, request.archive.name),
                                 request.archive, target.name)
        ui.info(
            f"resuming restore of {params.backup_id} on {target.name}; "
            f"done: {', '.join(sorted(journal.done))}"
        )
        outcome = run_execution(target, params, X.Upload(request.archive, None), journal, ui)
        harvest = tuple(P.HarvestMode(u, m, w) for u, m, w in params.harvest_modes)
        return RestoreResult(
            outcome=outcome,
            next_steps=next_steps(params.api_port, params.new_address, harvest),
            harvest=harvest,
        )
    finally:
        target.close()


def check_resume_backup(params: X.Params, request: RestoreRequest, target: str) -> None:
    """Given the journal's params and a `restore ID --resume` request, return if ID names the
    journaled backup (the whole ID or a prefix of it). Raise RefusedError (exit 6) otherwise."""
    ref = request.backup_ref
    if ref and not params.backup_id.startswith(ref):
        raise RefusedError(
            f"the restore journaled on {target} is of backup {params.backup_id}, not {ref}",
            hint=f"resume it with `restore {params.backup_id} --resume` (or `--resume --target {target}`), "
            f"or undo it with `restore --rollback --target {target}` before restoring {ref}",
        )


def check_resume_archive(params: X.Params, backup: P.BackupFacts, archive: Path, target: str) -> None:
    """Given the journal's params and the facts of the archive a `--resume --archive FILE` names,
    return if it is the backup the journaled restore started with: same backup ID, same size and,
    when the journal recorded it (`ca_sha256`, else the `ca_cert` PEM), the same controller CA (the
    restored agents and clients trust only that CA). Raise RefusedError (exit 6) before anything
    continues otherwise."""
    undo = f"or undo the restore with `restore --rollback --target {target}` and start afresh"
    if backup.backup_id != params.backup_id:
        raise RefusedError(
            f"the restore journaled on {target} is of backup {params.backup_id}, but {archive.name} "
            f"holds {backup.backup_id}",
            hint=f"resume with the archive of {params.backup_id} (`restore --resume --archive FILE "
            f"--target {target}`), {undo}",
        )
    recorded = params.ca_sha256 or (apiprobe.ca_fingerprint(params.ca_cert) if params.ca_cert else "")
    if recorded:
        have = apiprobe.ca_fingerprint(backup.ca_cert) if backup.ca_cert else "none"
        if have != recorded:
            raise RefusedError(
                f"the controller CA in {archive.name} (SHA-256 {have[:16]}…) is not the CA of the "
                f"backup the restore on {target} started with ({recorded[:16]}…)",
                hint=f"this archive is not the one the restore started with, although it names the same "
                f"backup: resume with that archive, {undo}",
            )
    if backup.archive_size != params.size:
        raise RefusedError(
            f"{archive.name} has {backup.archive_size} bytes, the archive the restore on {target} "
            f"started with had {params.size}",
            hint=f"resume with the archive the restore started with, {undo}",
        )


def rollback(connector: Connector, request: RestoreRequest, ui: UI) -> RestoreResult:
    """Return the target to the snapshot its journaled restore took before changing anything."""
    target = connect_journaled(connector, request, ui)
    try:
        journal = X.read_journal(target)
        ui.info(f"rolling back the restore on {target.name}")
        done = X.rollback(target, journal)
        return RestoreResult(rolled_back=done)
    finally:
        target.close()
