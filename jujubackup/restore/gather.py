"""The gather stage of a restore: the archive (downloaded from the controller that stores it, or a
local file), the facts the plan needs from it (metadata.json, agent.conf, the dump's machines; sizes
and oplog from the verification), and the target's probe (its controller's facts and the restore
preflight, which probes the backup's old controllers FROM THE TARGET, never from here)."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bson
from ruamel.yaml import YAML

from jujubackup import archive, profiles, rewrite, scripts
from jujubackup.errors import RefusedError, VerifyError
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Connector, Host
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
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.operations.connecting import probe, refuse_if_locked
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.restore import execute as X
from jujubackup.restore import plan as P
from jujubackup.restore.backupfacts import backup_facts, peer_endpoints
from jujubackup.restore.request import RestoreRequest
from jujubackup.restore.target import TargetProbe, target_probe
from jujubackup.ui import UI
from jujubackup.verifier import BackgroundVerify

PEER_CONNECT_TIMEOUT = 3
"""Seconds the target's preflight waits for each old controller it probes."""


def fetch_stored(
    connector: Connector, request: RestoreRequest, ui: UI, work: Path
) -> tuple[Host, Path, str]:
    """Connect to the controller holding backup `request.backup_ref`, download it (checksum-verified)
    into `work`; return the host, the local path and the backup ID. Raise NotFoundError (5)."""
    host = connect_catalog(connector, ui, request.backup_dir, holding=[str(request.backup_ref)])
    got = download(
        host, DownloadRequest(str(request.backup_ref), directory=work, backup_dir=request.backup_dir), ui
    )
    return host, got.path, got.id


SLIM_MEMBERS = frozenset({
    archive.METADATA, archive.ROOT_TAR, archive.MANIFEST, "dump/juju/machines.bson",
    *(f"{archive.DUMP_DIR}/{p}" for p in (*rewrite.DUMP_COLLECTIONS, rewrite.OPLOG, rewrite.TXNS)),
})
"""The outer members read_backup and the re-addressing overlay (rewrite.readdress_archive) read."""


def read_slim(path: Path, backup_id: str, slim: Path, verifying: BackgroundVerify | None) -> P.BackupFacts:
    """Given an archive, write `slim` (archive.slim_copy of SLIM_MEMBERS: one pass over the whole
    archive, after which read_backup and the overlay read only the small members) and return
    read_backup's facts from it. Raise as read_or_report."""
    try:
        archive.slim_copy(path, slim, SLIM_MEMBERS)
        return read_backup(path, backup_id, members=slim)
    except Exception:
        if verifying is not None:
            verifying.result().raise_for_failures()
        raise


def read_backup(path: Path, backup_id: str, *, members: Path | None = None) -> P.BackupFacts:
    """Given an archive (and optionally a slim copy of it holding its SLIM_MEMBERS, read instead),
    return the BackupFacts the plan needs from metadata.json, the backed-up
    machine's agent.conf and the dump's machines (sizes and oplog come from the verification: `Checked`).
    Raise VerifyError if one of them is missing or unreadable or the machine id is no Juju machine
    id, RefusedError for a container machine id (metadata.restore_machine_id)."""
    size = path.stat().st_size
    path = members or path
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
    facts = backup_facts(
        meta,
        conf if isinstance(conf, dict) else {},
        machines,
        backup_id=archive_backup_id(meta, backup_id),
        archive_size=size,
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
        The caller must check that what is pushed has the recorded SHA-256 (execute.pushed_digest)."""
        record = fully_verified(path)
        local = (record or {}).get("local") or {}
        if record is None or not isinstance(local.get("unpacked_bytes"), int) or "has_oplog" not in local:
            return None
        sha256, size = str(record["sha256"]), int(record["size"])
        return cls(sha256, size, local["unpacked_bytes"], bool(local["has_oplog"]))


def verified_report(verifying: BackgroundVerify | None) -> archive.VerifyReport:
    """Return the background verification's report; raise VerifyError (8) if a check failed."""
    assert verifying is not None
    report = verifying.result()
    report.raise_for_failures()
    return report


def read_or_report(path: Path, backup_id: str, verifying: BackgroundVerify | None) -> P.BackupFacts:
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
    host: Host, backup: Callable[[], P.BackupFacts], request: RestoreRequest, *, old_controllers: bool = True
) -> tuple[P.BackupFacts, TargetProbe]:
    """Run the probe (connecting.probe: a controller's facts) and the restore preflight (old controllers
    probed from the target unless not `old_controllers`, disk, addresses, mongo tools) on `host`;
    `backup` returns the backup's facts (waiting while they are read: the probe runs meanwhile, the
    preflight needs them). Return the facts and the TargetProbe. Raise the error `backup` raises
    first, RefusedError for a Juju 1.x host, LockedError (exit 7) while another jujubackup
    operation holds the controller's lock (each step then holds it: lib/restore's take_controller_lock)."""
    # Both read only: the preflight runs on a second channel of the same connection while the probe
    # runs (each is mostly waiting on tool start-ups and the old controllers' connect timeout).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight") as pool:
        pre_future = pool.submit(lambda: preflight(host, backup(), old_controllers=old_controllers))
        try:
            found = probe_controller(host, request.backup_dir)
        except Exception:
            backup()  # an archive that cannot be read is the error raised first
            raise
        pre = pre_future.result()
    facts = backup()
    if found is not None:
        refuse_if_locked(found, host.name)  # a create/remove/upload runs: its lock, not ours yet
    return facts, target_probe(found, pre, host.name, host.address, request.address, facts.juju_version)


def probe_controller(host: Host, backup_dir: str) -> ControllerFacts | None:
    """Return the controller facts connecting.probe finds on `host`, None when no Juju controller
    is there (a spare). Raise RefusedError for a Juju 1.x host."""
    try:
        return probe(host, backup_dir)
    except RefusedError as err:
        if "1.x" in err.message:
            raise
        return None


def preflight(host: Host, backup: P.BackupFacts, *, old_controllers: bool = True) -> dict[str, Any]:
    """Run restore-preflight on `host`: its addresses, the backup's old controllers probed from it
    (unless not `old_controllers`), disk, state size, mongo tools; return its JSON document."""
    endpoints = (
        peer_endpoints(backup, P.TargetFacts(name=host.name, address=host.address, profile=None))
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
