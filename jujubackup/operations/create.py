"""create: back up a controller into its catalog (issue 3; DESIGN.md §3, §4).

connect (first healthy controller) -> probe -> check mode and free space -> render create.sh ->
run it detached (it survives a dropped session; its EXIT trap restarts what it stopped) -> parse
the stored record. The work on the host is bash + coreutils + tar + gzip/pigz + flock + systemd +
the mongo tools; the mongo password never leaves the host.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from jujubackup import __version__, scripts
from jujubackup.archive import build_manifest
from jujubackup.catalog import (
    CatalogRecord,
    build_record,
    default_holder,
    lock_error,
    parse_record,
    stale_lock_warning,
)
from jujubackup.errors import RefusedError, RemoteStepError
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Connector
from jujubackup.metadata import BackupMetadata, archive_name, make_backup_id
from jujubackup.operations.connecting import connect_controller
from jujubackup.profiles import (
    DEFAULT_BACKUP_DIR,
    MODE_ONLINE,
    Profile,
    check_mode,
    profile_named,
    space_needed,
)
from jujubackup.remote_codes import RC_EXISTS, RC_NOSPACE
from jujubackup.remote_values import remote_int
from jujubackup.scripts import BashValue
from jujubackup.ui import UI, human_bytes

POLL_SECONDS = 0.25
HEARTBEAT_FRESH_MS = 1000
"""create.sh commits only while the client's last poll is this recent (4 polls; waits up to 3 s for one)."""
RESTARTED_PREFIX = "jujubackup-restarted: "
RESTART_FAILED_PREFIX = "jujubackup-restart-failed: "


@dataclass(frozen=True)
class CreateRequest:
    """What the operator asked for."""

    notes: str = ""
    mode: str = MODE_ONLINE
    force: bool = False
    exclude_logs: bool = False
    backup_dir: str = DEFAULT_BACKUP_DIR


@dataclass(frozen=True)
class CreateResult:
    record: CatalogRecord
    host: str
    result: dict[str, Any]


def create(via: Connector, ui: UI, request: CreateRequest) -> CreateResult:
    """Back up the first healthy controller of the connector; return the stored record.

    Raise RefusedError (exit 6) for an unsupported mode or too little free space (unless `force`),
    LockedError (exit 7) when another operation holds the controller's lock, RemoteStepError
    (exit 4) when a step fails on the host, ConnectError (exit 3) when no host qualifies.
    """
    host, facts = connect_controller(
        via, ui, request.backup_dir, refuse_unfinished_restore=True, refuse_locked=True
    )
    try:
        profile = profile_named(facts.profile)
        check_mode(profile, request.mode)
        check_units(facts, profile, request.mode, ui)
        check_space(facts, request.force, ui)
        started = datetime.now(timezone.utc)
        backup_id = make_backup_id(started, facts.model_uuid)
        ui.info(
            f"backing up machine {facts.machine_id} on {host.name} ({facts.profile}, mode {request.mode})"
        )
        text = render_script(facts, profile, request, started, backup_id)
        seen = JobLines()
        try:
            result = host.run_detached(
                "create", text, poll=POLL_SECONDS, on_stderr=lambda line: seen.feed(ui, line)
            )
        except RemoteStepError as err:
            raise _create_error(err, host.name, backup_id, seen, request.backup_dir) from err
        doc = result.json()
        for unit in doc.get("already_stopped") or []:
            ui.warn(f"{unit} was already stopped: left stopped (not started by the backup)")
        size = remote_int(doc.get("size"), "create's archive size", host=host.name)
        record = parse_record(json.dumps(doc["record"]), request.backup_dir, archive_size=size)
        for unit, window in (doc.get("windows") or {}).items():
            ui.info(f"{unit} was down {window.get('seconds')} s")
        if profile.db_service not in (doc.get("windows") or {}):
            ui.info(f"{profile.db_service} was never stopped")
        return CreateResult(record=record, host=host.name, result=doc)
    finally:
        host.close()


def check_units(facts: ControllerFacts, profile: Profile, mode: str, ui: UI) -> None:
    """Raise RefusedError (exit 6) when the jujud unit a quiesce/stop backup stops is not installed.

    In online mode (nothing is stopped), warn instead.
    """
    jujud = profile.jujud_service(facts.machine_id)
    if not facts.missing_unit(jujud):
        return
    message = f"unit {jujud}.service not found on {facts.host}"
    if mode == MODE_ONLINE:
        ui.warn(message + " (online mode stops nothing; going on)")
        return
    raise RefusedError(
        message,
        hint="restore or reinstall the machine agent's unit (or use --mode online); nothing was changed",
    )


def check_space(facts: ControllerFacts, force: bool, ui: UI) -> None:
    """Raise RefusedError (exit 6) unless the backup dir has estimate + max(20 %, 5 GiB) free.

    With `force`, warn instead.
    """
    need = space_needed(facts.estimate_bytes)
    if need <= facts.free_bytes:
        return
    message = (
        f"not enough free space in {facts.backup_dir} on {facts.host}: need {human_bytes(need)}, "
        f"have {human_bytes(facts.free_bytes)} (dump estimate {human_bytes(facts.estimate_bytes)} "
        "+ max(20 %, 5 GiB))"
    )
    if force:
        ui.warn(message + "; going on because of --force")
        return
    raise RefusedError(message, hint="free some space or give --force to try anyway")


def archive_metadata(facts: ControllerFacts, started: datetime, notes: str, backup_id: str) -> BackupMetadata:
    """Given the facts and the start time, return the metadata written into the archive (Juju's
    convention: Checksum/Size/Stored/Finished are unknown inside the archive)."""
    major = facts.juju_version.split(".", 1)[0]
    return BackupMetadata(
        id=backup_id,
        started=started,
        notes=notes,
        model_uuid=facts.model_uuid,
        machine=facts.machine_id,
        hostname=facts.hostname,
        version=facts.juju_version,
        series=facts.series,
        base=facts.base if major.isdigit() and int(major) >= 3 else "",
        controller_uuid=facts.controller_uuid,
        ha_nodes=facts.ha_nodes,
        controller_machine_id=facts.machine_id,
        controller_machine_instance_id=facts.instance_id,
    )


def record_json(
    meta: BackupMetadata, profile: Profile, request: CreateRequest, backup_id: str
) -> dict[str, Any]:
    """Return the <ID>.json record, with BashValue where create.sh fills in what it knows at the commit
    (size, checksums, finish time, file count, service windows; scripts.bash_json)."""
    stored = meta.with_storage(
        checksum="",
        size=0,
        stored=meta.started or datetime.now(timezone.utc),
        backup_id=backup_id,
    )
    manifest = {
        "format-version": 1,
        "tool": f"jujubackup {__version__}",
        "consistency": request.mode,
        "profile": profile.name,
        "excluded-dbs": _excluded(profile, request),
        "files": BashValue("file_count"),
        "db-unavailable-seconds": BashValue("down_seconds"),
        "service-windows": BashValue("windows"),
    }
    record = build_record(
        stored,
        backup_id=backup_id,
        filename=archive_name(meta.started or datetime.now()),
        size=0,
        sha256="",
        manifest=manifest,
    )
    finished = BashValue("finished", string=True)
    record.update({"Checksum": BashValue("checksum", string=True), "Size": BashValue("size"),
                   "Stored": finished, "Finished": finished, "sha256": BashValue("sha256", string=True),
                   "size": BashValue("size")})
    return record


def manifest_json(profile: Profile, request: CreateRequest) -> dict[str, Any]:
    """Return manifest.json (archive.build_manifest's schema), with BashValue where create.sh fills in
    the member list, the service windows and mongodump's document counts (scripts.bash_json)."""
    manifest = build_manifest([], tool_version=__version__, consistency=request.mode)
    manifest.update(
        {
            "profile": profile.name,
            "excluded-dbs": _excluded(profile, request),
            "db-unavailable-seconds": BashValue("down_seconds"),
            "service-windows": BashValue("windows"),
            "files": BashValue("files"),
            # documents mongodump reported for juju.models/machines/applications (the drill compares)
            "dump-documents": BashValue("documents"),
        }
    )
    return manifest


def render_script(
    facts: ControllerFacts, profile: Profile, request: CreateRequest, started: datetime, backup_id: str
) -> str:
    """Return create.sh for these facts and this request (no secrets in it)."""
    meta = archive_metadata(facts, started, request.notes, backup_id)
    return scripts.render(
        "create",
        backup_id=backup_id,
        backup_dir=request.backup_dir,
        mode=request.mode,
        tag=facts.tag,
        state_port=facts.state_port,
        db_service=profile.db_service,
        jujud_service=profile.jujud_service(facts.machine_id),
        mongod=profile.mongod,
        mongodump=profile.mongodump,
        tools_version=facts.tools_version,
        db_path=profile.db_path,
        stop_port=40000 + secrets.randbelow(20000),
        dump_scratch_dir=profile.dump_scratch_dir or "",
        exclude_logs=request.exclude_logs,
        holder=default_holder("create"),
        run_token=secrets.token_hex(4),
        heartbeat_fresh_ms=HEARTBEAT_FRESH_MS,
        dump_flags=profile.dump_flags,
        ignored_dbs=profile.ignored_dbs,
        root_files=profile.root_files,
        metadata_json=json.dumps(meta.to_juju_dict(), indent=2),
        manifest_json=manifest_json(profile, request),
        record_json=record_json(meta, profile, request, backup_id),
    )


def _excluded(profile: Profile, request: CreateRequest) -> list[str]:
    return [*profile.ignored_dbs, *(["logs"] if request.exclude_logs else [])]


@dataclass
class JobLines:
    """What the create job reported on stderr: its `error:` lines and the services restarted on exit."""

    errors: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    restart_failed: list[str] = field(default_factory=list)

    def feed(self, ui: UI, line: str) -> None:
        """Record one line of the job's stderr and forward it: progress -> info, stale lock/staging ->
        warning, error -> error, the rest -> debug."""
        line = line.rstrip("\n")
        if line.startswith("progress: "):
            ui.info(line[len("progress: ") :])
        elif (warning := stale_lock_warning(line)) is not None:
            ui.warn(warning)
        elif line.startswith("jujubackup-stale-staging: "):
            ui.warn(f"removed the staging left by a dead run: {line.split(': ', 1)[1]}")
        elif line.startswith(RESTARTED_PREFIX):
            self.restarted.append(line[len(RESTARTED_PREFIX) :])
        elif line.startswith(RESTART_FAILED_PREFIX):
            self.restart_failed.append(line[len(RESTART_FAILED_PREFIX) :])
            ui.error(f"could not restart {line[len(RESTART_FAILED_PREFIX) :]}")
        elif line.startswith("error: "):
            self.errors.append(line[len("error: ") :])
            ui.error(line[len("error: ") :])
        else:
            ui.debug(line)

    def hint(self) -> str:
        """Return what the exit path did to the services (what actually happened, from the job's lines)."""
        parts = ["nothing was registered"]
        if self.restarted:
            parts.append(f"restarted what the backup had stopped: {', '.join(self.restarted)}")
        if self.restart_failed:
            units = " ".join(f"{u}.service" for u in self.restart_failed)
            parts.append(f"COULD NOT RESTART {', '.join(self.restart_failed)}: run `systemctl start {units}`")
        if not self.restarted and not self.restart_failed:
            parts.append("no service had been stopped")
        return "; ".join(parts)


def _create_error(
    err: RemoteStepError, host: str, backup_id: str, seen: JobLines, backup_dir: str
) -> Exception:
    """Map the create script's exit codes to typed errors; the message names the job's own cause."""
    if err.returncode == RC_EXISTS:
        return RefusedError(
            f"a backup with ID {backup_id} already exists on {host}", hint="try again in a second"
        )
    mapped = lock_error(err, host)
    if mapped is not err:
        return mapped
    hint = seen.hint()
    if err.returncode == RC_NOSPACE:
        hint = f"free space on {host} (or give another --backup-dir), then try again; {hint}"
    cause = seen.errors[-1] if seen.errors else None
    message = f"create on {host} failed (exit {err.returncode}): {cause}" if cause else None
    return RemoteStepError(
        err.script, err.returncode, err.stderr_tail, host=err.host, hint=hint, message=message or err.message
    )
