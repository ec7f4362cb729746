"""restore: connect → probe → plan → show → confirm → execute → verify (DESIGN.md §5, issue 5).

Three forms: `restore ID` (back onto the controller the backup is stored on), `restore ID --target
HOST` and `restore --archive FILE --target HOST` (disaster recovery onto a fresh machine). Plus
`--resume` and `--rollback` of a restore journaled on a target.

Old controllers named in the backup are probed FROM THE TARGET (restore-preflight), never from here.
"""

from __future__ import annotations

import gzip
import os
import re
import ssl
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from stat import S_ISREG
from typing import Any

import bson
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from ruamel.yaml.scalarstring import ScalarString

from jujubackup import apiprobe, archive, facts, profiles, rewrite, scripts
from jujubackup.catalog import Catalog
from jujubackup.connect import connect_first, connect_one
from jujubackup.errors import (
    DeclinedError,
    JujuBackupError,
    NotFoundError,
    RefusedError,
    UsageError,
    VerifyError,
)
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Host
from jujubackup.local_archives import contents_of, fully_verified
from jujubackup.metadata import (
    BackupMetadata,
    is_backup_id,
    is_uuid,
    make_backup_id,
    parse_metadata_json,
    restore_machine_id,
    validate_backup_id,
)
from jujubackup.operations import status
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.operations.repoint import RepointRequest, RepointResult, repoint_from
from jujubackup.operations.status import connect_catalog
from jujubackup.remote_values import remote_int
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI
from jujubackup.verifier import BackgroundVerify

SKIP_READDRESS_ENV = "JUJUBACKUP_TEST_SKIP_READDRESS"
"""Test-only switch: push the archive without re-addressing (so a test can see jujud refuse)."""

PEER_CONNECT_TIMEOUT = 3
Confirm = Callable[[str], bool]


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
class RestoreRequest:
    """What the operator asked for (built once by the CLI)."""

    backup_ref: str | None = None
    archive: Path | None = None
    target: str | None = None
    address: str | None = None
    instance_id: str | None = None
    dry_run: bool = False
    yes: bool = False
    force: bool = False
    allow_downgrade: bool = False
    resume: bool = False
    rollback: bool = False
    update_client_config: bool = False
    work_dir: Path | None = None
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR
    repoint: RepointRequest | None = field(default_factory=RepointRequest)  # None: --no-repoint


@dataclass
class RestoreResult:
    """What the verb reports: the plan, what ran, the verification and the next steps."""

    plan: P.Plan | None = None
    outcome: X.Outcome | None = None
    next_steps: tuple[str, ...] = ()
    rolled_back: dict[str, Any] | None = None
    dry_run: bool = False
    repointed: RepointResult | None = None
    harvest: tuple[P.HarvestMode, ...] = ()

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.plan:
            data["plan"] = self.plan.as_dict()
        if self.outcome:
            data["ran"] = self.outcome.ran
            data["skipped"] = self.outcome.skipped
            data["verify"] = self.outcome.verify
            data["seconds"] = self.outcome.seconds
        if self.rolled_back is not None:
            data["rolled-back"] = self.rolled_back
        if self.repointed is not None:
            data["repoint"] = self.repointed.as_data()
        if self.harvest or (self.plan and self.plan.harvest):
            data["harvest-mode"] = [h.as_dict() for h in (self.harvest or self.plan.harvest)]  # type: ignore[union-attr]
        data["next-steps"] = list(self.next_steps)
        data["dry-run"] = self.dry_run
        return data


def restore(settings: ConnectionSettings, request: RestoreRequest, ui: UI, confirm: Confirm) -> RestoreResult:
    """Run the restore the request asks for; return what happened.

    Raise UsageError for a bad combination of arguments, VerifyError (exit 8) for an archive that does
    not verify, RefusedError (exit 6) for a failed precondition, RemoteStepError (exit 4) for a failed
    step (services the restore stopped are started again first).
    """
    check_request(request)
    if request.rollback:
        return rollback(settings, request, ui)
    if request.resume:
        return resume(settings, request, ui)
    with _work_dir(request.work_dir) as work:
        return fresh_restore(settings, request, ui, confirm, work)


def check_request(request: RestoreRequest) -> None:
    """Raise UsageError unless the request names exactly what one form of restore needs."""
    if request.resume or request.rollback:
        if request.resume and request.rollback:
            raise UsageError("--resume and --rollback exclude each other")
        return
    if bool(request.backup_ref) == bool(request.archive):
        raise UsageError(
            "give a backup ID or --archive FILE (not both)",
            hint="`restore ID`, `restore ID --target HOST` or `restore --archive FILE --target HOST`",
        )
    if request.archive and not request.target:
        raise UsageError("--archive needs --target HOST (the machine to restore onto)")
    status.check_backup_dir(request.backup_dir)


# ------------------------------------------------------------------------------------------- fresh


def fresh_restore(
    settings: ConnectionSettings,
    request: RestoreRequest,
    ui: UI,
    confirm: Confirm,
    work: Path,
    stages: Stages = Stages(),
) -> RestoreResult:
    """connect → probe → plan → show → confirm → execute → verify for a new restore (`stages`: what
    another verb changes in them)."""
    started = time.monotonic()
    mode = stages.mode or (P.Mode.dr if request.archive else (P.Mode.move if request.target else P.Mode.same))
    source: Host | None = None
    remote_copy: str | None = None
    if request.archive:
        local = request.archive
        backup_id = request.archive.name
    else:
        source, local, backup_id = fetch_stored(settings, request, ui, work)
        if not request.target:
            remote_copy = Catalog(source, request.backup_dir).archive_path(backup_id)
    # The archive is verified (one CPU-bound pass) in another process while the target is connected
    # and probed and the re-addressing overlay is written here; with --yes the archive is pushed
    # meanwhile too, once the refusals that need no verified archive have passed.
    early: Future[str] | None = None
    stamped = Checked.of_stamp(local)
    if stamped is not None:
        ui.info(f"{local.name} passed `verify` earlier and is unchanged: the target checks its SHA-256")
    with (
        BackgroundVerify(local, sha1=False) if stamped is None else nullcontext(None) as verifying,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="push") as threads,
    ):
        target = source if (source and not request.target) else connect_one(settings, str(request.target), ui)
        try:
            backup = _read_or_report(local, backup_id, verifying)
            refuse_unfinished(target)
            target_facts = probe_target(
                target, backup, request, old_controllers=stages.probe_old_controllers
            )
            ui.debug(f"{_since(started)}: target {target.name} probed")
            if stages.on_probed is not None:
                stages.on_probed(Staged(target, local, backup, target_facts))
            readdress = os.environ.get(SKIP_READDRESS_ENV) != "1" and needs_readdress(
                mode, backup, target_facts
            )
            options = P.RestoreOptions(
                mode=mode, force=request.force, allow_downgrade=request.allow_downgrade, readdress=readdress
            )
            if request.yes and not request.dry_run and remote_copy is None:
                provisional = replace(backup, unpacked_size=backup.archive_size)
                P.check_preconditions(provisional, target_facts, options, target_facts_peers(target_facts))
                early = threads.submit(X.push_early, target, local)
            overlay = prepare_overlay(local, backup, target_facts, request, work) if readdress else None
            ui.debug(f"{_since(started)}: re-addressing overlay written")
            checked = stamped or Checked.of_report(_verified(verifying))
            ui.debug(f"{_since(started)}: archive verified")
            backup = replace(backup, unpacked_size=checked.unpacked_size, has_oplog=checked.has_oplog)
            pushed_sha256 = None
            if early is not None:
                P.check_preconditions(backup, target_facts, options, target_facts_peers(target_facts))
                pushed_sha256 = early.result()
                ui.debug(f"{_since(started)}: archive pushed")
        except BaseException:
            _discard_early(target, early)
            target.close()
            raise
    pushed = prepared(local, checked, overlay)
    try:
        changes = pushed.changes
        peers = target_facts_peers(target_facts)
        plan = P.make_plan(
            backup, target_facts, options, peers=peers, changes=changes, harvest=pushed.harvest,
            check=not request.dry_run,
        )
        plan = replace(plan, steps=tuple(s for s in plan.steps if s.name not in stages.omit_steps))
        if request.dry_run:
            refusal = dry_run_refusal(backup, target_facts, options, peers)
            # The refusal raised is printed once, by main(): not among the plan's warnings too.
            show_plan(ui, plan, omit=f"refused: {refusal.message.split(' (and ')[0]} " if refusal else None,
                      as_data=refusal is not None)
            if refusal is not None:
                raise refusal
            return RestoreResult(plan=plan, dry_run=True)
        if stages.show_plan:
            show_plan(ui, plan)
        if not request.yes and not confirm(f"restore {backup.backup_id} onto {target.name}?"):
            raise DeclinedError("restore not confirmed: nothing changed",
                                hint="give --yes to restore without asking")
        params = X.Params(
            backup_id=backup.backup_id,
            mode=mode.value,
            profile=str(target_facts.profile),
            machine_id=backup.machine_id,
            model_uuid=backup.model_uuid,
            new_address=target_facts.address,
            state_port=backup.state_port,
            api_port=backup.api_port,
            steps=plan.step_names(),
            sha256=pushed.sha256,
            size=pushed.size,
            install=plan.install_services,
            overlay_sha256=pushed.overlay_sha256,
            overlay_size=pushed.overlay_size,
            harvest_modes=tuple((h.model_uuid, h.model, h.was) for h in plan.harvest),
            backup_dir=request.backup_dir,
            ca_sha256=apiprobe.ca_fingerprint(backup.ca_cert) if backup.ca_cert else "",
            mongod_version=target_facts.mongo_version or "",
            ca_cert=backup.ca_cert,
        )
        X.start_journal(target, params)
        prepare = round(time.monotonic() - started, 2)
        outcome = run_execution(
            target,
            params,
            X.Upload(pushed.archive, pushed.overlay, remote_copy, pushed_sha256=pushed_sha256),
            X.Journal(exists=True),
            ui,
        )
        outcome.seconds = {"prepare": prepare, **outcome.seconds}  # verify, probe, plan, early push
        if stages.on_restored is not None:
            stages.on_restored(Staged(target, local, backup, target_facts), outcome)
            return RestoreResult(plan=plan, outcome=outcome)
        check_api(outcome, target, backup, target_facts.address, ui)
        result = RestoreResult(
            plan=plan,
            outcome=outcome,
            next_steps=next_steps(backup.api_port, target_facts.address, plan.harvest),
        )
        if request.update_client_config:
            update_client_config(
                backup.controller_uuid, target_facts.address, backup.api_port, ui, confirm, yes=request.yes
            )
        if readdress and request.repoint is not None:  # the address changed: the agents need it
            demoted = tuple(c.machine_id for c in backup.others if c.machine_id != "?")
            result.repointed = repoint_agents(settings, target, request, ui, demoted)
        return result
    finally:
        target.close()
        if source is not None and source is not target:
            source.close()


def repoint_agents(
    settings: ConnectionSettings, target: Host, request: RestoreRequest, ui: UI, demoted: tuple[str, ...] = ()
) -> RepointResult:
    """The last stage of a restore onto a new address: point every agent of the model at it
    (operations/repoint.py). The backup's other controllers, which the restore demoted (`demoted`,
    machine ids), are listed as such and not re-pointed. Machines left are in the result (the CLI
    exits EXIT_PARTIAL)."""
    assert request.repoint is not None
    ui.info("re-pointing the model's agents at the restored controller")
    asked = replace(request.repoint, target=request.target or target.name, demoted=demoted)
    return repoint_from(settings, target, asked, ui)


def _discard_early(target: Host, early: Future[str] | None) -> None:
    """When the restore stops before starting, remove what an early push left on the target."""
    if early is None:
        return
    with suppress(Exception):
        early.result()
    with suppress(JujuBackupError):
        X.discard_journal(target)


def fetch_stored(
    settings: ConnectionSettings, request: RestoreRequest, ui: UI, work: Path
) -> tuple[Host, Path, str]:
    """Connect to the controller holding backup `request.backup_ref`, download it (checksum-verified)
    into `work`; return the host, the local path and the backup ID. Raise NotFoundError (5)."""
    host = connect_catalog(settings, ui, request.backup_dir, holding=[str(request.backup_ref)])
    got = download(
        host, DownloadRequest(str(request.backup_ref), directory=work, backup_dir=request.backup_dir), ui
    )
    return host, got.path, got.id


def read_backup(path: Path, backup_id: str) -> P.BackupFacts:
    """Given an archive, return the BackupFacts the plan needs from metadata.json, the backed-up
    machine's agent.conf and the dump's machines (sizes and oplog come from the verification: `Checked`).
    Raise VerifyError if one of them is missing or unreadable or the machine id is no Juju machine
    id, RefusedError for a container machine id (metadata.restore_machine_id)."""
    meta_text = leading_metadata(path)
    if meta_text is None:
        meta_text = archive.read_members(path, ["metadata.json"]).files.get("metadata.json")
    if meta_text is None:
        raise VerifyError(f"archive {path} has no juju-backup/metadata.json")
    meta = parse_metadata_json(meta_text)
    machine_id = restore_machine_id(meta)  # before it names a member, a unit, a path or a DB user
    conf_name = archive.agent_conf_path(machine_id)
    contents = archive.read_members(path, ["dump/juju/machines.bson"], [conf_name, P.UBUNTU_KEYS])
    if conf_name not in contents.root_files:
        raise VerifyError(f"root.tar of {path} has no {conf_name}", hint="is this a controller backup?")
    conf = YAML(typ="safe", pure=True).load(contents.root_files[conf_name].decode("utf-8")) or {}
    machines = bson.decode_all(contents.files.get("dump/juju/machines.bson", b""))
    keys = contents.root_files.get(P.UBUNTU_KEYS.lstrip("/"))
    facts = P.backup_facts(
        meta,
        conf if isinstance(conf, dict) else {},
        machines,
        backup_id=archive_backup_id(meta, backup_id),
        archive_size=path.stat().st_size,
        unpacked_size=0,
        has_oplog=False,
    )
    if keys is None:
        return facts
    return replace(facts, ubuntu_keys=P.count_keys(keys.decode("utf-8", "replace")))


def archive_backup_id(meta: BackupMetadata, fallback: str) -> str:
    """Given an archive's metadata and a fallback (its file name, or the ID it was fetched by),
    return the backup's ID: metadata's `ID`, else the storage ID Juju gives it (the archive's own
    metadata.json never has one: state/backups/storage.go newStorageID, `Started` in UTC + "." +
    model UUID), else the fallback when that is an ID itself. Raise VerifyError (exit 8) when no
    valid ID comes out (the ID is journaled, names remote files and is checked on --resume)."""
    if meta.id:
        return validate_backup_id(meta.id)
    if meta.started and is_uuid(meta.model_uuid):
        return make_backup_id(meta.started, meta.model_uuid)
    if is_backup_id(fallback):
        return fallback
    raise VerifyError(
        "the archive's metadata.json has neither an ID nor a start time and model UUID to make one",
        hint="is this a Juju controller backup (juju create-backup / jujubackup create)?",
    )


def leading_metadata(path: Path, look: int = 3) -> bytes | None:
    """Return metadata.json's bytes when it is among the first `look` members (Juju and jujubackup
    write it first), without reading the rest of the archive; None otherwise or if unreadable."""
    wanted = f"{archive.TOP}/{archive.METADATA}"
    try:
        with gzip.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for n, member in enumerate(tar):
                if n >= look:
                    return None
                if member.isreg() and member.name.lstrip("./") == wanted and member.size < 2**20:
                    fileobj = tar.extractfile(member)
                    return fileobj.read() if fileobj else None
    except (OSError, EOFError, tarfile.TarError):
        return None
    return None


@dataclass(frozen=True)
class Checked:
    """What restore takes from the archive's verification: the digest the target must find for the
    pushed bytes, and what the members unpack to."""

    sha256: str
    size: int
    unpacked_size: int
    has_oplog: bool

    @classmethod
    def of_report(cls, report: archive.VerifyReport) -> Checked:
        """Given a passed verification's report (with its digest), return its summary."""
        assert report.digest is not None
        contents = contents_of(report)
        digest = report.digest
        return cls(digest.sha256, digest.size, contents["unpacked_bytes"], contents["has_oplog"])

    @classmethod
    def of_stamp(cls, path: Path) -> Checked | None:
        """Given a local archive, return the summary its sidecar recorded when `verify` passed on it,
        if it is unchanged since (local_archives.fully_verified) and recorded its contents; else None.
        The caller must check that the bytes pushed have the recorded SHA-256 (the target does)."""
        record = fully_verified(path)
        local = (record or {}).get("local") or {}
        if record is None or not isinstance(local.get("unpacked_bytes"), int) or "has_oplog" not in local:
            return None
        sha256, size = str(record["sha256"]), int(record["size"])
        return cls(sha256, size, local["unpacked_bytes"], bool(local["has_oplog"]))


def _verified(verifying: BackgroundVerify | None) -> archive.VerifyReport:
    """Return the background verification's report; raise VerifyError (8) if a check failed."""
    assert verifying is not None
    report = verifying.result()
    report.raise_for_failures()
    return report


def _read_or_report(path: Path, backup_id: str, verifying: BackgroundVerify | None) -> P.BackupFacts:
    """read_backup, but when the archive cannot be read, raise the verification's own findings."""
    try:
        return read_backup(path, backup_id)
    except Exception:
        if verifying is not None:
            verifying.result().raise_for_failures()
        raise


def refuse_unfinished(target: Host) -> None:
    """Raise RefusedError when an unfinished restore is journaled on `target`."""
    journal = X.read_journal(target)
    if journal.exists and journal.params is not None:
        raise RefusedError(
            f"an unfinished restore is journaled on {target.name}",
            hint=f"continue it with `restore --resume --target {target.name}` or undo it with "
            f"`restore --rollback --target {target.name}`",
        )


def probe_target(
    host: Host, backup: P.BackupFacts, request: RestoreRequest, *, old_controllers: bool = True
) -> TargetProbe:
    """Run the probe (status.probe: a controller's facts) and the restore preflight (old controllers
    probed from the target unless not `old_controllers`, disk, addresses, mongo tools) on `host`; return the
    TargetProbe. Raise RefusedError for a Juju 1.x host, LockedError (exit 7) while another jujubackup
    operation holds the controller's lock (each step then holds it: restore-lib's take_controller_lock)."""
    found: ControllerFacts | None
    try:
        found = status.probe(host, request.backup_dir)
    except RefusedError as err:
        if "1.x" in err.message:
            raise
        found = None  # no Juju controller there: a spare
    if found is not None:
        status.refuse_if_locked(found, host.name)  # a create/remove/upload runs: its lock, not ours yet
    pre = preflight(host, backup, old_controllers=old_controllers)
    base = (
        target_from_facts(found, host.name)
        if found
        else spare_from_preflight(pre, host.name, backup.juju_version)
    )
    addresses = tuple(str(a) for a in pre.get("addresses") or [])
    address = request.address or (
        host.address if host.address in addresses else (addresses[0] if addresses else host.address)
    )
    peers = tuple(
        P.PeerProbe(str(p["address"]), remote_int(p["port"], "restore-preflight's peer port", host=host.name,
                                                  lo=1, hi=65535), bool(p["answers"]))
        for p in pre.get("peers") or []
        if str(p["address"]) not in addresses
    )
    if base.mongo_version is None and base.profile is not None:
        line = str((pre.get("mongod_versions") or {}).get(profiles.profile_named(base.profile).mongod, ""))
        base = replace(base, mongo_version=_version_in(line) or None)
    return TargetProbe(
        **{
            **base.__dict__,
            "address": address,
            "addresses": addresses,
            "free_bytes": remote_int(pre.get("free_bytes"), "restore-preflight's free_bytes", host=host.name,
                                     default=0),
            "state_bytes": remote_int(pre.get("state_bytes"), "restore-preflight's state_bytes",
                                      host=host.name, default=0),
            "raft_state": bool(pre.get("raft_state")),
            "raft_machines": raft_machines(pre.get("raft_machines")),
            **dqlite_facts(pre.get("dqlite"), host.name),
        },
        peers=peers,
        instance_id=found.instance_id if found else "",
        cloud_instance_id=cloud_instance_id(pre.get("cloud_instance_id")),
    )


def preflight(host: Host, backup: P.BackupFacts, *, old_controllers: bool = True) -> dict[str, Any]:
    """Run restore-preflight on `host`: its addresses, the backup's old controllers probed from it
    (unless not `old_controllers`), disk, state size, mongo tools; return its JSON document."""
    endpoints = (
        P.peer_endpoints(backup, P.TargetFacts(name=host.name, address=host.address, profile=None))
        if old_controllers
        else []
    )
    tool_paths = sorted({path for p in profiles.PROFILES for path in (p.mongod, p.mongorestore, p.db_path)})
    doc = host.run(
        "restore-preflight",
        scripts.render(
            "restore-preflight",
            journal_dir=X.JOURNAL_DIR,
            endpoints=[list(e) for e in endpoints],
            connect_timeout=PEER_CONNECT_TIMEOUT,
            mongods=sorted({p.mongod for p in profiles.PROFILES}),
            state_paths=sorted({profiles.DATA_DIR, *(p.mongo_dir for p in profiles.PROFILES)}),
            paths=tool_paths,
        ),
        timeout=60 + 2 * PEER_CONNECT_TIMEOUT * len(endpoints),
    ).json()
    return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class TargetProbe(P.TargetFacts):
    """TargetFacts plus what only the operation needs: the peer probes and the current instance id."""

    peers: tuple[P.PeerProbe, ...] = ()
    instance_id: str = ""
    cloud_instance_id: str = ""


CLOUD_INSTANCE_FILE = "/var/lib/cloud/data/instance-id"
INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def cloud_instance_id(value: object) -> str:
    """Given what the target's preflight read from cloud-init's instance-id file, return it when it
    looks like an instance id (letters, digits, . _ : / @ + -; at most 128), else "" (hostile input:
    the value goes into the restored database)."""
    text = str(value or "").strip()
    return text if INSTANCE_ID.match(text) else ""


def dqlite_facts(value: object, host: str) -> dict[str, Any]:
    """Given the preflight's `dqlite` section ({node, servers, loopback}), return the TargetFacts
    fields dqlite_node and dqlite_servers. Raise HostileOutputError for a count out of range."""
    doc = value if isinstance(value, dict) else {}
    return {
        "dqlite_node": doc.get("node") is True,
        "dqlite_servers": remote_int(doc.get("servers"), "restore-preflight's dqlite servers", host=host,
                                     default=0, hi=10_000),
    }


def raft_machines(value: object) -> tuple[str, ...]:
    """Given the preflight's list of machine tags found in the target's raft state, return the
    well-formed ones (`machine-N`), sorted and unique."""
    items = value if isinstance(value, list) else []
    return tuple(sorted({str(t) for t in items if re.fullmatch(r"machine-\d{1,9}", str(t))}))


def choose_instance_id(request_id: str | None, target: TargetProbe) -> tuple[str, str]:
    """Given --instance-id and the target's probe, return (instance id, where it came from): the
    flag, the target's own Juju controller, cloud-init's instance id, else manual:<address>."""
    if request_id:
        return request_id, "--instance-id"
    if target.instance_id and target.instance_id != facts.UNKNOWN:
        return target.instance_id, f"{target.name}'s Juju controller"
    if target.cloud_instance_id:
        return target.cloud_instance_id, f"cloud-init on {target.name} ({CLOUD_INSTANCE_FILE})"
    return f"manual:{target.address}", f"no cloud-init instance id on {target.name}: a manual machine"


def target_facts_peers(target: P.TargetFacts) -> tuple[P.PeerProbe, ...]:
    return target.peers if isinstance(target, TargetProbe) else ()


def target_from_facts(found: ControllerFacts, name: str) -> P.TargetFacts:
    """Given a controller's probe facts, return its TargetFacts (address filled in by the caller)."""
    return P.TargetFacts(
        name=name,
        address="",
        profile=found.profile,
        juju_version=found.juju_version if found.juju_version != facts.UNKNOWN else None,
        controller_uuid=found.controller_uuid or None,
        machine_id=found.machine_id,
        mongo_version=found.mongo_version or None,
        live_services=tuple(s.name for s in found.services if s.active),
        has_state=True,
        models=tuple(found.models) if found.models is not None else None,
        model_uuid=found.model_uuid or None,
    )


def spare_from_preflight(pre: dict[str, Any], name: str, juju_version: str = "") -> P.TargetFacts:
    """Given the preflight of a host without a Juju controller and the Juju version to restore,
    return its TargetFacts: the first profile whose mongod and mongorestore exist there and whose
    Juju and mongod versions match (Profile.detect_juju, detect_mongod), else the first whose tools
    exist; whether a juju-db data dir exists; no Juju."""
    existing = {str(p) for p in pre.get("existing") or []}
    versions = pre.get("mongod_versions") or {}
    installed = [p for p in profiles.PROFILES if p.mongod in existing and p.mongorestore in existing]
    matching = [
        p
        for p in installed
        if juju_version.startswith(p.detect_juju)
        and _version_in(str(versions.get(p.mongod, ""))).startswith(p.detect_mongod)
    ]
    profile = next((p.name for p in [*matching, *installed]), None)
    has_db = any(p.db_path in existing for p in profiles.PROFILES)
    return P.TargetFacts(name=name, address="", profile=profile, has_state=has_db)


def needs_readdress(mode: P.Mode, backup: P.BackupFacts, target: P.TargetFacts) -> bool:
    """Re-address unless the backup goes back onto its own single controller at the same address."""
    restored = backup.restored
    same_place = restored is not None and target.address in restored.addresses and not backup.others
    return not (mode is P.Mode.same and same_place)


@dataclass(frozen=True)
class Prepared:
    """What gets pushed: the original archive and, when re-addressed, a small overlay of the rewritten
    members (unpacked over it on the target), their digests, and the change lines for the plan."""

    archive: Path
    sha256: str
    size: int
    overlay: Path | None = None
    overlay_sha256: str = ""
    overlay_size: int = 0
    changes: tuple[str, ...] = ()
    harvest: tuple[P.HarvestMode, ...] = ()


@dataclass(frozen=True)
class Overlay:
    """rewrite.py's re-addressing overlay written locally, its digests and the plan's change lines."""

    path: Path
    sha256: str
    size: int
    changes: tuple[str, ...]
    harvest: tuple[P.HarvestMode, ...] = ()


def prepare_overlay(
    local: Path, backup: P.BackupFacts, target: TargetProbe, request: RestoreRequest, work: Path
) -> Overlay:
    """Write the re-addressing overlay of `local` for `target` into `work` (only the rewritten members:
    no recompression of the big unchanged ones); return it with the change lines for the plan."""
    out = work / "readdress-overlay.tar.gz"
    instance, source = choose_instance_id(request.instance_id, target)
    result = rewrite.readdress_archive(
        str(local),
        str(out),
        rewrite.ReaddressTarget(backup.machine_id, target.address, instance, backup.model_uuid),
        tmp_dir=str(work),
        overlay=True,
    )
    lines = [c.describe() for c in result.changes if c.collection != "agent.conf"]
    diff = [f"  {line}" for line in result.agent_conf_diff.splitlines()]
    changes = (f"instance id {instance} (from {source})", *lines, *(["agent.conf:", *diff] if diff else []))
    harvest = tuple(
        P.HarvestMode(str(c.doc_id).removesuffix(":e"), c.label, c.old if isinstance(c.old, str) else None)
        for c in rewrite.harvest_changes(result.changes)
    )
    if rewrite.SETTINGS in result.missing:
        changes = (
            *changes,
            "juju.settings: not in this dump - no model's provisioner-harvest-mode can be set to none "
            "(each model keeps harvesting as it was configured)",
        )
    return Overlay(out, result.digest.sha256, result.digest.size, changes, harvest)


def prepared(local: Path, checked: Checked, overlay: Overlay | None) -> Prepared:
    """Given the verified archive and its optional overlay, return what the upload step pushes."""
    sha, size = checked.sha256, checked.size
    if overlay is None:
        return Prepared(local, sha, size)
    return Prepared(
        local, sha, size, overlay.path, overlay.sha256, overlay.size, overlay.changes, overlay.harvest
    )


def dry_run_refusal(
    backup: P.BackupFacts, target: P.TargetFacts, options: P.RestoreOptions, peers: tuple[P.PeerProbe, ...]
) -> RefusedError | None:
    """Return the RefusedError a real run would raise for these facts (None when it would proceed)."""
    try:
        P.check_preconditions(backup, target, options, peers)
    except RefusedError as err:
        return err
    return None


def show_plan(ui: UI, plan: P.Plan, omit: str | None = None, *, as_data: bool = False) -> None:
    """Print the plan on stdout as readable lines, and the warnings on stderr except one starting
    with `omit` (the refusal the caller raises). With --format json/yaml stdout gets ONE document:
    the verb's summary (which holds the plan), or the plan itself when `as_data` (no summary follows)."""
    if ui.format.value != "tabular":
        if as_data:
            ui.data(plan.as_dict())
        return
    ui.line(f"restore plan ({plan.mode.value}): backup {plan.backup_id} -> {plan.target}")
    ui.line(
        f"  machine {plan.machine_id}: {', '.join(plan.old_addresses) or 'unknown'} -> {plan.new_address}"
    )
    for line in plan.demoted:
        ui.line(f"  {line}")
    if plan.target_kind:
        ui.line(f"  target: {plan.target_kind}")
    ui.line("steps:")
    for n, step in enumerate(plan.steps, 1):
        ui.line(f"  {n:>2}. {step.title}")
        for detail in step.details:
            ui.line(f"        {detail}")
    if plan.harvest:
        ui.line("provisioner-harvest-mode -> none in every model (earlier value, command to turn it back):")
        for h in plan.harvest:
            was = h.was or f"unset (default {P.HARVEST_DEFAULT})"
            ui.line(f"  {h.model or h.model_uuid}: {was}  ->  {h.restore_command()}")
    if plan.changes:
        ui.line("re-addressing (database and agent.conf):")
        for change in plan.changes:
            ui.line(f"  {change}")
    for warning in plan.warnings:
        if omit is None or not warning.startswith(omit):
            ui.warn(warning)


def run_execution(host: Host, params: X.Params, upload: X.Upload, journal: X.Journal, ui: UI) -> X.Outcome:
    """Execute the steps with progress lines; return the Outcome."""
    with ui.transfer("push archive", params.size, journal.archive_bytes) as advance:
        return X.execute(
            host,
            params,
            upload=upload,
            journal=journal,
            on_step=lambda s: ui.info(f"step {s}"),
            progress=advance,
        )


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


def next_steps(api_port: int, address: str, harvest: tuple[P.HarvestMode, ...]) -> tuple[str, ...]:
    """Return what the operator does next: check the controller, turn each model's harvest mode
    back once its machines look right (the exact commands), restore HA, point the client."""
    back = [f"  {h.restore_command()}" for h in harvest]
    turn_back = (
        ("harvesting of unknown instances is off (provisioner-harvest-mode none) in every model; once "
         "`juju status` shows the machines you expect, turn each model back:", *back)
        if harvest else ()
    )
    return (
        f"check the controller: juju status -m controller (API at {address}:{api_port})",
        *turn_back,
        "restore HA: juju enable-ha",
        "point the Juju client at the new address: jujubackup restore ... --update-client-config "
        "(or edit api-endpoints in controllers.yaml)",
    )


# ----------------------------------------------------------------------------------- resume / rollback


def connect_journaled(settings: ConnectionSettings, request: RestoreRequest, ui: UI) -> Host:
    """Connect to the host a journaled restore ran on: --target, else the first of the -H hosts
    (or -c's controllers) holding a restore journal - as `restore ID` restores onto the -H
    controller. Raise NotFoundError (5) when none holds one, UsageError without any host."""
    if request.target:
        return connect_one(settings, request.target, ui)

    def journaled(host: Host) -> bool:
        if not X.read_journal(host).exists:
            raise NotFoundError(f"no restore journal on {host.name}")
        return True

    return connect_first(settings, ui, journaled)


def resume(settings: ConnectionSettings, request: RestoreRequest, ui: UI) -> RestoreResult:
    """Continue a journaled restore on the target from its first step not done."""
    target = connect_journaled(settings, request, ui)
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


def rollback(settings: ConnectionSettings, request: RestoreRequest, ui: UI) -> RestoreResult:
    """Return the target to the snapshot its journaled restore took before changing anything."""
    target = connect_journaled(settings, request, ui)
    try:
        journal = X.read_journal(target)
        ui.info(f"rolling back the restore on {target.name}")
        done = X.rollback(target, journal)
        return RestoreResult(rolled_back=done)
    finally:
        target.close()


# ------------------------------------------------------------------------------------ client config


def update_client_config(
    controller_uuid: str,
    address: str,
    port: int,
    ui: UI,
    confirm: Confirm,
    *,
    yes: bool,
    data_dir: Path | None = None,
) -> bool:
    """Rewrite api-endpoints of the controller with `controller_uuid` in the Juju client's
    controllers.yaml to `address:port`, showing the diff first; return True if it was written."""
    from jujubackup.connect import juju_data

    path = (data_dir or juju_data()) / "controllers.yaml"
    if path.is_symlink():
        raise RefusedError(f"{path} is a symbolic link: not rewriting through it (client config not updated)",
                           hint="replace the link by the file (Juju writes a plain file), or edit "
                           "api-endpoints by hand")
    if not path.is_file():
        ui.warn(f"no {path}: client config not updated")
        return False
    old_text = _read_nofollow(path)
    new_text, name = rewrite_controllers_yaml(old_text, controller_uuid, f"{address}:{port}")
    if name is None or new_text == old_text:
        ui.warn(f"controller {controller_uuid} is not in {path} (or already points at {address})")
        return False
    import difflib

    for line in difflib.unified_diff(
        old_text.splitlines(), new_text.splitlines(), str(path), str(path), lineterm=""
    ):
        ui.line(line)
    if not yes and not confirm(f"update api-endpoints of controller {name} in {path}?"):
        return False
    replace_file(path, new_text.encode("utf-8"))
    return True


def _read_nofollow(path: Path) -> str:
    """Return the text of regular file `path`, opened without following a link. Raise RefusedError
    (exit 6) for a link or a non-regular file (one planted after the check)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise RefusedError(f"cannot read {path}: {err.strerror}", hint="check that file") from err
    with os.fdopen(fd, "rb") as fh:
        if not S_ISREG(os.fstat(fd).st_mode):
            raise RefusedError(f"{path} is not a regular file: client config not updated")
        return fh.read().decode("utf-8")


def replace_file(path: Path, data: bytes) -> None:
    """Replace `path` by a file holding `data`: written to a private temp file (0600, O_EXCL) in the
    same directory, given the old file's mode, synced, renamed over it. Never writes through a link
    (the rename replaces a link planted at `path` itself, never its target); the temp file is removed
    if anything fails."""
    mode = 0o600
    with suppress(OSError):
        mode = os.lstat(path).st_mode & 0o777 & ~0o022  # never wider for group/others than it was
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".jujubackup.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def rewrite_controllers_yaml(text: str, controller_uuid: str, endpoint: str) -> tuple[str, str | None]:
    """Given controllers.yaml text, return (new text, controller name) with that controller's
    api-endpoints set to [endpoint] (name None when no controller has that uuid)."""
    import io

    yaml = YAML()
    yaml.preserve_quotes = True
    doc = yaml.load(text) or {}
    for name, entry in (doc.get("controllers") or {}).items():
        if isinstance(entry, dict) and entry.get("uuid") == controller_uuid:
            old = entry.get("api-endpoints")
            first = old[0] if isinstance(old, list) and old else None
            value = type(first)(endpoint) if isinstance(first, ScalarString) else endpoint
            new = CommentedSeq([value])
            if isinstance(old, CommentedSeq) and old.fa.flow_style():
                new.fa.set_flow_style()
            entry["api-endpoints"] = new
            out = io.StringIO()
            yaml.dump(doc, out)
            return out.getvalue(), str(name)
    return text, None


# ------------------------------------------------------------------------------------------ helpers


def _since(started: float) -> str:
    return f"+{time.monotonic() - started:.1f}s"


@contextmanager
def _work_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="jujubackup-restore-") as tmp:
        yield Path(tmp)


def _der(pem: str) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.strip() + "\n")


def _version_in(text: str) -> str:
    match = re.search(r"(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else ""
