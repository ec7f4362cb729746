"""upload FILE: put a local archive into a controller's catalog, verified at both ends, resumable.

Flow: verify the archive locally (digests, members, metadata, manifest, BSON) -> work out its ID and
catalog record (the `<ID>.json` sidecar from a download, else its own metadata: Juju-made archives
with FormatVersion 0/1 and no manifest work too) -> refuse an existing ID unless --force -> stream it
to a hidden staging file in the backup dir, resuming a staged prefix that matches -> register: the
controller re-hashes the staged file and only then moves it into place and writes `<ID>.json`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jujubackup.archive import VerifyReport, verify_archive
from jujubackup.catalog import Catalog, build_record
from jujubackup.errors import NotFoundError, RefusedError, VerifyError
from jujubackup.host.base import Host
from jujubackup.local_archives import read_sidecar
from jujubackup.metadata import archive_name, make_backup_id
from jujubackup.operations.status import connect_controller
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import ConnectionSettings
from jujubackup.transfer import Throttle, ThrottledSource, hash_prefix, remote_remove, remote_stat
from jujubackup.ui import UI


@dataclass(frozen=True)
class UploadRequest:
    file: Path
    force: bool = False
    bwlimit: int | None = None
    backup_dir: str = DEFAULT_BACKUP_DIR


@dataclass(frozen=True)
class UploadResult:
    id: str
    remote_path: str
    size: int
    sha256: str
    resumed_from: int

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": self.remote_path, "size": self.size, "sha256": self.sha256,
                "resumed-from": self.resumed_from}


def upload(host: Host, request: UploadRequest, ui: UI) -> UploadResult:
    """Given a connected controller and a local archive, store it in the catalog; return the result.

    Raise NotFoundError (5) if the file is missing, VerifyError (8) if it does not verify locally or
    on the controller (nothing is registered), RefusedError (6) if the ID is stored and not `force`,
    LockedError (7) when the controller is locked, ConnectError (3) on a dropped connection (the
    staged part stays for a resume).
    """
    if not request.file.is_file():
        raise NotFoundError(f"archive {request.file} not found")
    ui.info(f"verifying {request.file}")
    report = verify_archive(request.file)
    report.raise_for_failures()
    record = catalog_record(request.file, report)
    backup_id = str(record["ID"])
    catalog = Catalog(host, request.backup_dir)
    catalog.prepare_dir()
    if not request.force and any(r.id == backup_id for r in catalog.records()):
        raise RefusedError(f"a backup with ID {backup_id} is already stored on {host.name}",
                           hint="use --force to replace it")
    staged = catalog.staging_path(backup_id)
    offset = _resume_point(host, staged, request.file, int(record["size"]), ui)
    progress = ui.transfer(f"upload {backup_id[:15]}", record["size"], offset)
    with request.file.open("rb") as fh, progress as advance:
        fh.seek(offset)
        host.put(ThrottledSource(fh, Throttle(request.bwlimit)), staged, offset=offset,  # type: ignore[arg-type]
                 progress=advance)
    try:
        stored = catalog.register(staged, record, force=request.force)
    except VerifyError:
        remote_remove(host, staged)
        raise
    ui.info(f"uploaded {request.file} to {host.name} as {stored.id}")
    return UploadResult(stored.id, stored.path, stored.size, stored.sha256, offset)


def catalog_record(path: Path, report: VerifyReport) -> dict[str, Any]:
    """Given a verified archive and its report, return the catalog record to register.

    A sidecar whose sha256 matches the file keeps the archive's original ID and record; otherwise the
    record is built from the archive's metadata (ID from metadata, else Juju's `<started>.<model>`).
    """
    assert report.digest is not None and report.metadata is not None
    digest = report.digest
    sidecar = read_sidecar(path)
    if sidecar and sidecar.get("ID") and sidecar.get("sha256") == digest.sha256:
        record = {k: v for k, v in sidecar.items() if k != "local"}
        record.update({"sha256": digest.sha256, "size": digest.size})
        return record
    md = report.metadata
    now = datetime.now(timezone.utc)
    started = md.started or now
    backup_id = md.id or make_backup_id(started, md.model_uuid or "unknown")
    stored = md.with_storage(checksum=digest.sha1_b64, size=digest.size, stored=now, backup_id=backup_id)
    manifest = report.manifest or {}
    summary = {
        "format-version": manifest.get("format-version"),
        "tool": manifest.get("tool", "juju"),
        "consistency": manifest.get("consistency", ""),
        "files": len(manifest.get("files") or []),
        "uploaded": True,
    }
    return build_record(stored, backup_id=backup_id, filename=archive_name(started), size=digest.size,
                        sha256=digest.sha256, manifest=summary)


def _resume_point(host: Host, staged: str, path: Path, size: int, ui: UI) -> int:
    """Return where to continue: the staged file's length if its bytes match the local file's, else 0."""
    remote = remote_stat(host, staged, prefix=-1)
    if not remote.exists or remote.size == 0:
        return 0
    if remote.size <= size and remote.sha256 == hash_prefix(path, remote.size).hexdigest():
        ui.info(f"resuming upload at byte {remote.size} of {size}")
        return remote.size
    ui.warn(f"staged upload on {host.name} does not match {path}; starting over")
    return 0


def run_upload(settings: ConnectionSettings, ui: UI, request: UploadRequest) -> UploadResult:
    """Connect to the first controller of `settings`, upload, and close. Errors as `upload`."""
    if not request.file.is_file():
        raise NotFoundError(f"archive {request.file} not found")
    host, _facts = connect_controller(settings, ui, request.backup_dir, require_healthy=False)
    try:
        return upload(host, request, ui)
    finally:
        host.close()
