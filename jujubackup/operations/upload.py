"""upload FILE: put a local archive into a controller's catalog, verified at both ends, resumable.

Flow: name the staging file (the `<ID>.json` sidecar's ID, the ID in metadata.json when it comes
early in the archive, else a key of the local file) and refuse a stored ID unless --force -> resume
a staged prefix that matches -> ONE pass over the local file: every chunk feeds the local verifier
(digests, members, metadata, manifest, BSON; a thread) and, from the resume offset on, the remote
writer, which hashes the whole staged file as it writes it -> a failed verification (as soon as the
stream breaks, else at its end) aborts: the staged file is removed, nothing registered, exit 8 ->
the record (sidecar or archive metadata: Juju-made FormatVersion 0/1 archives work too) -> the
remote SHA-256 must equal the local one -> register: the controller moves the staged file into
place and writes `<ID>.json`.
"""

from __future__ import annotations

import hashlib
import queue
import tarfile
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from jujubackup.archive import TOP, VerifyReport, verify_stream
from jujubackup.catalog import Catalog, build_record
from jujubackup.errors import NotFoundError, RefusedError, VerifyError
from jujubackup.host.base import Host
from jujubackup.local_archives import read_sidecar
from jujubackup.metadata import (
    archive_name,
    is_backup_id,
    make_backup_id,
    parse_metadata_json,
    validate_backup_id,
)
from jujubackup.operations.status import connect_controller
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.settings import ConnectionSettings
from jujubackup.transfer import CHUNK, Throttle, hash_prefix, remote_remove, remote_stat
from jujubackup.ui import UI

PEEK_BYTES = 16 << 20  # how far into the archive to look for metadata.json (the staging name)
QUEUE_CHUNKS = 8  # chunks buffered between the file reader and the verifier (memory bound)


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
    on the controller (the staged file is removed, nothing is registered), RefusedError (6) if the ID
    is stored and not `force`, LockedError (7) when the controller is locked, ConnectError (3) on a
    dropped connection (the staged part stays for a resume).
    """
    if not request.file.is_file():
        raise NotFoundError(f"archive {request.file} not found")
    size = request.file.stat().st_size
    early_id = staging_id(request.file)
    early_id = early_id if is_backup_id(early_id) else ""  # never build a path from a hostile ID
    catalog = Catalog(host, request.backup_dir)
    catalog.prepare_dir()
    if early_id and not request.force and any(r.id == early_id for r in catalog.records()):
        raise _exists(early_id, host)
    staged = catalog.staging_path(early_id or _file_key(request.file))
    offset = _resume_point(host, staged, request.file, size, ui)
    ui.info(f"verifying and uploading {request.file}")
    try:
        report, remote_sha = _send_verifying(host, request, staged, offset, size, ui)
        report.raise_for_failures()
        record = catalog_record(request.file, report)
        if remote_sha != record["sha256"]:
            raise VerifyError(
                f"the staged copy on {host.name} has SHA-256 {remote_sha}, the local file "
                f"{record['sha256']}: the transfer was damaged",
                hint="upload again (the damaged staged copy was removed)",
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


def _send_verifying(
    host: Host, request: UploadRequest, staged: str, offset: int, size: int, ui: UI
) -> tuple[VerifyReport, str]:
    """Read the local file once: verify every byte (a thread) while sending the bytes from `offset`
    on to `staged`; return (verify report, SHA-256 the host computed of the whole staged file).

    Raise VerifyError (8) as soon as the verifier finds the stream broken (the transfer stops).
    """
    verifier = _Verifier(str(request.file))
    remote: list[str] = []
    progress = ui.transfer(f"upload {request.file.name[:15]}", size, offset)
    with request.file.open("rb", buffering=0) as fh, progress as advance:
        source = _TeeSource(fh, offset, verifier, Throttle(request.bwlimit))
        verifier.start()
        try:
            host.put(source, staged, offset=offset, progress=advance,  # type: ignore[arg-type]
                     on_sha256=remote.append)
        finally:
            verifier.close()
    report = verifier.result()
    return report, remote[0] if remote else ""


class _Verifier:
    """verify_stream in a thread, fed chunk by chunk through a bounded queue (None ends the stream)."""

    def __init__(self, label: str) -> None:
        self.report = VerifyReport(label=label)
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="verify", daemon=True)
        self._closed = False

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            verify_stream(_QueueReader(self.chunks), label=self.report.label, report=self.report)  # type: ignore[arg-type]
        except BaseException as err:  # reported by result()
            self.error = err
            _discard(self.chunks)

    def failed(self) -> bool:
        """Return True once a check has failed (a broken stream is known before its end)."""
        return self.error is not None or any(not c.ok for c in list(self.report.checks))

    def feed(self, data: bytes) -> None:
        """Queue one chunk (blocks while the verifier is behind). Raise VerifyError once it failed."""
        while True:
            if self.failed():
                raise VerifyError(f"archive {self.report.label} did not verify: {self._first_failure()}",
                                  "the archive is damaged or unsafe; the upload was stopped and its "
                                  "staged copy removed (`jujubackup verify FILE` lists every check)")
            try:
                self.chunks.put(data, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """End the stream (the verifier finishes the pass) and wait for the thread."""
        if not self._closed:
            self._closed = True
            while self.thread.is_alive():
                try:
                    self.chunks.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        self.thread.join()

    def result(self) -> VerifyReport:
        """Return the finished report. Raise what the verifier raised, if it crashed."""
        self.close()
        if self.error is not None:
            raise self.error
        return self.report

    def _first_failure(self) -> str:
        if self.error is not None:
            return f"verifier failed: {self.error}"
        failed = [c.message for c in list(self.report.checks) if not c.ok]
        return failed[0] if failed else "?"


def _discard(chunks: queue.Queue[bytes | None]) -> None:
    """Empty the queue until its end marker so a feeder never blocks on a dead verifier."""
    while chunks.get() is not None:
        pass


class _QueueReader:
    """A read-only stream over chunks from a queue (None: end of stream)."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self.chunks = chunks
        self.data = b""
        self.pos = 0
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.data):
            if self.eof:
                return b""
            data = self.chunks.get()
            if data is None:
                self.eof = True
                return b""
            self.data, self.pos = data, 0
        if self.pos == 0 and (n < 0 or n >= len(self.data)):
            self.pos = len(self.data)
            return self.data  # the whole chunk: no copy
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def readable(self) -> bool:
        return True


class _TeeSource:
    """What put reads: the local file read once, each chunk fed to the verifier; returns the bytes
    from `offset` on (throttled). Raise VerifyError when the verifier failed."""

    def __init__(self, fh: IO[bytes], offset: int, verifier: _Verifier, throttle: Throttle) -> None:
        self.fh = fh
        self.offset = offset
        self.verifier = verifier
        self.throttle = throttle
        self.pos = 0

    def read(self, size: int = CHUNK) -> bytes:
        while True:
            data = self.fh.read(CHUNK)
            if not data:
                return b""
            self.verifier.feed(data)
            start, self.pos = self.pos, self.pos + len(data)
            if self.pos <= self.offset:
                continue
            if start < self.offset:
                data = data[self.offset - start:]
            self.throttle(len(data))
            return data


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
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, VerifyError):
        return ""
    if meta is None:
        return ""
    if meta.id:
        return meta.id
    if meta.started and meta.model_uuid:
        return make_backup_id(meta.started, meta.model_uuid)
    return ""


def _peek_metadata(raw: IO[bytes]) -> Any:
    """Return the parsed metadata.json if it comes within PEEK_BYTES of the raw stream, else None."""
    with tarfile.open(fileobj=raw, mode="r|gz") as tar:
        for member in tar:
            if raw.tell() > PEEK_BYTES:
                return None
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
        record = {k: v for k, v in sidecar.items() if k != "local"}
        validate_backup_id(str(record["ID"]))
        record.update({"sha256": digest.sha256, "size": digest.size})
        return record
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
