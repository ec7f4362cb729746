"""upload FILE: put a local archive into a controller's catalog, verified at both ends, resumable.

Flow: a big archive not verified earlier starts verifying in another process before connecting
(digests, members, metadata, manifest, BSON; a small one is verified here before it is sent) ->
name the staging file (the `<ID>.json` sidecar's ID, the ID in metadata.json when it is in the
first 16 MiB, else a key of the local file) -> one round trip (upload-prepare): refuse a host
without a machine agent.conf, create the backup dir, refuse a stored ID unless --force, stat the
staged file -> resume a staged prefix that matches -> send from the resume offset on (through
OpenSSH the `ssh` client reads the file itself) to the remote writer, which hashes the whole staged
file once written -> a failed verification (as soon as the verifier finishes, which is early for a
broken stream) aborts: the staged file is removed, nothing registered, exit 8 -> the record
(sidecar or archive metadata: Juju-made FormatVersion 0/1 archives work too) -> the remote SHA-256
must equal the local one -> register: the controller moves the staged file into place and writes
`<ID>.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from jujubackup import scripts
from jujubackup.archive import TOP, VerifyReport, verify_archive
from jujubackup.catalog import Catalog, build_record, foreign_dir_error
from jujubackup.errors import NotFoundError, RefusedError, RemoteStepError, VerifyError
from jujubackup.host.base import Connector, Host
from jujubackup.local_archives import fully_verified, read_sidecar
from jujubackup.metadata import (
    archive_name,
    is_backup_id,
    make_backup_id,
    parse_metadata_json,
    validate_backup_id,
)
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.remote_codes import RC_FOREIGN_DIR, RC_NO_ROOM, RC_NOT_JUJU
from jujubackup.remote_values import remote_bool
from jujubackup.transfer import CHUNK, RemoteFile, Throttle, hash_prefix, remote_file, remote_remove
from jujubackup.ui import UI, human_bytes
from jujubackup.verifier import BackgroundVerify

PEEK_BYTES = 16 << 20  # how far into the archive to look for metadata.json (the staging name)
PARALLEL_VERIFY_MIN = 32 << 20  # from this size on the archive is verified by another process while sent


AGENTS_DIR = "/var/lib/juju/agents"  # a host without a machine-*/agent.conf here is no Juju machine


@dataclass(frozen=True)
class UploadRequest:
    file: Path
    force: bool = False
    bwlimit: int | None = None
    backup_dir: str = DEFAULT_BACKUP_DIR
    agents_dir: str = AGENTS_DIR


@dataclass(frozen=True)
class _Prepared:
    """What upload-prepare found: whether the ID is stored, and the staged file (for the resume)."""

    stored: bool
    staged: RemoteFile


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


def upload(
    host: Host, request: UploadRequest, ui: UI, verifying: BackgroundVerify | None = None
) -> UploadResult:
    """Given a connected controller and a local archive, store it in the catalog; return the result.
    `verifying`: the verification of the file already started (start_verification), else it starts
    here when needed.

    Raise NotFoundError (5) if the file is missing, VerifyError (8) if it does not verify locally or
    on the controller (the staged file is removed, nothing is registered), RefusedError (6) if the
    host is no Juju machine or the ID is stored and not `force`, LockedError (7) when the controller
    is locked, ConnectError (3) on a dropped connection (the staged part stays for a resume).
    """
    with contextlib.ExitStack() as stack:
        if verifying is not None:
            stack.enter_context(verifying)  # stopped on any way out
        if not request.file.is_file():
            raise NotFoundError(f"archive {request.file} not found")
        size = request.file.stat().st_size
        early_id = staging_id(request.file)
        early_id = early_id if is_backup_id(early_id) else ""  # never build a path from a hostile ID
        catalog = Catalog(host, request.backup_dir)
        staged = catalog.staging_path(early_id or _file_key(request.file))
        verified = fully_verified(request.file)
        if verifying is None and verified is None:
            verifying = start_verification(request.file)
            if verifying is not None:
                stack.enter_context(verifying)
        prepared = _prepare(host, request, early_id, staged)
        if prepared.stored and not request.force:
            raise _exists(early_id, host)
        offset = _resume_point(host, prepared.staged, request.file, size, ui)
        return _upload(host, request, ui, catalog, staged, offset, size, verified, verifying)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns or raises


def _upload(
    host: Host, request: UploadRequest, ui: UI, catalog: Catalog, staged: str, offset: int, size: int,
    verified: dict[str, Any] | None, verifying: BackgroundVerify | None,
) -> UploadResult:
    """Send from `offset`, check the host's SHA-256 and register; remove the staged file when the
    archive or its copy is refused. Errors as `upload`."""
    try:
        if verified is not None:
            ui.info(f"uploading {request.file} (verified earlier: its SHA-256 is checked on {host.name})")
            remote_sha = _send(host, request, staged, offset, size, ui, None)
            record = _record_of_sidecar(verified)
        else:
            ui.info(f"verifying and uploading {request.file}")
            report, remote_sha = _send_verifying(host, request, staged, offset, size, ui, verifying)
            record = catalog_record(request.file, report)
        if remote_sha != record["sha256"]:
            raise VerifyError(
                f"the staged copy on {host.name} has SHA-256 {remote_sha}, the local file "
                f"{record['sha256']}: the transfer was damaged or the file changed"
                + (" since it was verified" if verified is not None else ""),
                hint="upload again (the staged copy was removed); `jujubackup verify FILE` checks the file",
            )
        stored = catalog.register(staged, record, force=request.force, staged_sha256=remote_sha)
    except (VerifyError, RefusedError):
        remote_remove(host, staged)
        raise
    ui.info(f"uploaded {request.file} to {host.name} as {stored.id}")
    return UploadResult(stored.id, stored.path, stored.size, stored.sha256, offset)


def _exists(backup_id: str, host: Host) -> RefusedError:
    return RefusedError(f"a backup with ID {backup_id} is already stored on {host.name}",
                        hint="use --force to replace it")


def start_verification(path: Path) -> BackgroundVerify | None:
    """Given a local archive to upload, start verifying it in another process if it is big enough
    to be worth it and was not verified earlier (host-independent: it can start before connecting);
    return the verification, or None (a small file is verified in this process when sent)."""
    try:
        big = path.stat().st_size >= PARALLEL_VERIFY_MIN
    except OSError:
        return None
    return BackgroundVerify(path) if big and fully_verified(path) is None else None


def _send_verifying(
    host: Host, request: UploadRequest, staged: str, offset: int, size: int, ui: UI,
    verifying: BackgroundVerify | None,
) -> tuple[VerifyReport, str]:
    """Verify the local file and send its bytes from `offset` on to `staged`; return (verify report,
    SHA-256 the host computed of the whole staged file). A big file is verified by another process
    (`verifying`) while it is sent (verification is CPU-bound, sending holds the GIL often: one
    process for both would do them one after the other); a small one first, here. The report's
    SHA-256 is of the bytes verified, so comparing it with the host's proves the bytes sent are
    those verified.

    Raise VerifyError (8) when the verification fails (a big archive's transfer stops as soon as
    the verifying process has finished with a failure; the caller removes the staged file).
    """
    if verifying is None:
        report = verify_archive(request.file)
        if not report.ok:
            raise _verify_failed(report)
        return report, _send(host, request, staged, offset, size, ui, None)
    remote_sha = _send(host, request, staged, offset, size, ui, verifying)
    report = verifying.result()
    if not report.ok:
        raise _verify_failed(report)
    return report, remote_sha


def _send(
    host: Host, request: UploadRequest, staged: str, offset: int, size: int, ui: UI,
    verifying: BackgroundVerify | None,
) -> str:
    """Send the file from `offset` on; return the host's SHA-256 of the staged file. Raise
    VerifyError as soon as `verifying` has finished with a failure."""
    remote: list[str] = []
    progress = ui.transfer(f"upload {request.file.name[:15]}", size, offset)
    with request.file.open("rb", buffering=0) as fh, progress as advance:
        fh.seek(offset)
        source = _Source(fh, verifying, Throttle(request.bwlimit))
        host.put(source, staged, offset=offset, progress=advance,
                 on_sha256=remote.append, size=size - offset)
    ui.debug(f"streamed via {host.streams_via}")
    return remote[0] if remote else ""


def _verify_failed(report: VerifyReport) -> VerifyError:
    first = next((c.message for c in report.checks if not c.ok), "?")
    return VerifyError(f"archive {report.label} did not verify: {first}",
                       "the archive is damaged or unsafe; the upload was stopped and its staged copy "
                       "removed (`jujubackup verify FILE` lists every check)")


class _Source:
    """What put reads: the local file in chunks (throttled). Raise VerifyError once the
    verification running meanwhile has failed (the verifier stops early on a broken stream)."""

    def __init__(self, fh: IO[bytes], verifying: BackgroundVerify | None, throttle: Throttle) -> None:
        self.fh = fh
        self.verifying = verifying
        self.throttle = throttle

    def read(self, size: int = CHUNK) -> bytes:
        self.check()
        data = self.fh.read(CHUNK)
        self.throttle(len(data))
        return data

    def check(self) -> None:
        """Raise VerifyError if the verification running meanwhile has finished with a failure."""
        if self.verifying is not None and self.verifying.done():
            report = self.verifying.result()
            if not report.ok:
                raise _verify_failed(report)

    def direct_file(self) -> tuple[int, Callable[[], None]] | None:
        """The file itself, for OpenSSH to read (host.base.DirectFile), unless throttled."""
        return None if self.throttle.limited else (self.fh.fileno(), self.check)


def staging_id(path: Path) -> str:
    """Given a local archive, return its ID if it is known cheaply, else "".

    From the `<archive>.json` sidecar, else from metadata.json if it is among the first PEEK_BYTES
    of the archive (a Juju archive without an ID gets `<Started>.<ModelUUID>`). The final record is
    worked out after verification; this names the staging file and refuses a stored ID early.
    """
    sidecar = read_sidecar(path)
    if sidecar and sidecar.get("ID"):
        return str(sidecar["ID"])
    try:
        with path.open("rb") as raw:
            meta = _peek_metadata(raw)
    except (tarfile.TarError, OSError, EOFError, ValueError, VerifyError, zlib.error):
        return ""
    if meta is None:
        return ""
    if meta.id:
        return meta.id
    if meta.started and meta.model_uuid:
        return make_backup_id(meta.started, meta.model_uuid)
    return ""


def _peek_metadata(raw: IO[bytes]) -> Any:
    """Return the parsed metadata.json if it comes within PEEK_BYTES of the raw stream, else None.

    Only those bytes are read: an archive whose metadata.json follows a big root.tar is not
    inflated to its end here (that took 1.2 s for 1 GiB before the upload had even started)."""
    head = io.BytesIO(raw.read(PEEK_BYTES))
    with tarfile.open(fileobj=head, mode="r|gz") as tar:
        for member in tar:
            if member.isreg() and member.name.lstrip("./") == f"{TOP}/metadata.json":
                fileobj = tar.extractfile(member)
                assert fileobj is not None
                return parse_metadata_json(fileobj.read(1 << 20))
    return None


def _file_key(path: Path) -> str:
    """Return a staging key for an archive whose ID is not known before the pass (stable for resume)."""
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return "file-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def catalog_record(path: Path, report: VerifyReport) -> dict[str, Any]:
    """Given a verified archive and its report, return the catalog record to register.

    A sidecar whose sha256 matches the file keeps the archive's original ID and record; otherwise the
    record is built from the archive's metadata (ID from metadata, else Juju's `<started>.<model>`).
    """
    assert report.digest is not None and report.metadata is not None
    digest = report.digest
    sidecar = read_sidecar(path)
    if sidecar and sidecar.get("ID") and sidecar.get("sha256") == digest.sha256:
        return {**_record_of_sidecar(sidecar), "sha256": digest.sha256, "size": digest.size}
    md = report.metadata
    now = datetime.now(timezone.utc)
    started = md.started or now
    model_uuid = md.model_uuid or md.controller_uuid
    if not md.id and not model_uuid:
        raise VerifyError(
            f"{path.name}: metadata names no model or controller UUID, so the backup has no ID",
            hint="an archive without ModelUUID cannot be catalogued; restore it with --archive instead",
        )
    backup_id = validate_backup_id(md.id or make_backup_id(started, model_uuid))
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


def _record_of_sidecar(sidecar: dict[str, Any]) -> dict[str, Any]:
    """Given the sidecar of an archive whose SHA-256 it records, return the catalog record (the
    sidecar without its local block). Raise VerifyError for an ID that is not one."""
    record = {k: v for k, v in sidecar.items() if k not in ("local", "stamp")}
    validate_backup_id(str(record["ID"]))
    return record


def _prepare(host: Host, request: UploadRequest, backup_id: str, staged: str) -> _Prepared:
    """Run upload-prepare: return whether `backup_id` is stored and the staged file's state.
    Raise RefusedError (6) when the host has no machine agent.conf (not a Juju machine), the backup
    dir is not a dedicated one or the archive does not fit there (need and have in the message)."""
    text = scripts.render("upload-prepare", backup_dir=request.backup_dir, backup_id=backup_id,
                          staged=staged, agents_dir=request.agents_dir, size=request.file.stat().st_size)
    try:
        doc = host.run("upload-prepare", text).json()
    except RemoteStepError as err:
        if err.returncode == RC_NOT_JUJU:
            raise RefusedError(
                f"{host.name} is not a Juju machine: no machine agent.conf under {request.agents_dir}",
                hint="upload to a controller (-c NAME or -H HOST); `jujubackup status` shows what a host is",
            ) from err
        if err.returncode == RC_FOREIGN_DIR:
            raise foreign_dir_error(err, host.name) from err
        if err.returncode == RC_NO_ROOM:
            raise _no_space(err, host.name, request.backup_dir) from err
        raise
    return _Prepared(remote_bool(doc.get("stored"), "upload-prepare's stored", host=host.name),
                     remote_file(doc.get("staged"), "upload-prepare", host.name))


def _no_space(err: RemoteStepError, host: str, backup_dir: str) -> RefusedError:
    """Given upload-prepare's refusal for space (exit 82), return the RefusedError (exit 6) with the
    need and have it printed."""
    need = have = 0
    for line in err.stderr_tail.splitlines():
        if line.startswith("jujubackup-space: "):
            with contextlib.suppress(ValueError):
                need, have = (int(n) for n in line.split()[1:3])
    return RefusedError(
        f"not enough free space in {backup_dir} on {host}: need {human_bytes(need)}, have "
        f"{human_bytes(have)} (the archive + a reserve of 5 % of the filesystem, at most 1 GiB)",
        hint="free some space on the controller or give another --backup-dir; nothing was sent",
    )


def _resume_point(host: Host, remote: RemoteFile, path: Path, size: int, ui: UI) -> int:
    """Given the staged file's state, return where to continue: its length if its bytes match the
    local file's, else 0."""
    if not remote.exists or remote.size == 0:
        return 0
    if remote.size <= size and remote.sha256 == hash_prefix(path, remote.size).hexdigest():
        ui.info(f"resuming upload at byte {remote.size} of {size}")
        return remote.size
    ui.warn(f"staged upload on {host.name} does not match {path}; starting over")
    return 0


def run_upload(via: Connector, ui: UI, request: UploadRequest) -> UploadResult:
    """Connect to the first controller of the connector, upload, and close. Errors as `upload`."""
    if not request.file.is_file():
        raise NotFoundError(f"archive {request.file} not found")
    verifying = start_verification(request.file)  # meanwhile: connect, prepare
    try:
        host = connect_catalog(via, ui, request.backup_dir)
    except BaseException:
        if verifying is not None:
            verifying.close()
        raise
    try:
        return upload(host, request, ui, verifying)
    finally:
        host.close()
