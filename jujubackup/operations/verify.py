"""verify FILE|ID: check an archive end to end (archive.verify_stream does the checking).

FILE or ID: the target is a FILE when it exists on this workstation, contains a `/` or ends in
`.tar.gz`/`.tgz`; anything else (`latest`, an ID or a unique ID prefix) is an ID. A FILE that does
not exist is NotFoundError (exit 5, "file not found: PATH"), a directory UsageError (exit 2); no
connection is attempted for either.

A local FILE is read from disk (expected digests from its sidecar when it has one). An ID is
verified where it is stored: the controller's copy is streamed through the same verifier without
being written to this workstation, against the catalog's size and SHA-256.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jujubackup import crypt
from jujubackup.archive import VerifyReport, verify_archive, verify_stream
from jujubackup.catalog import Catalog
from jujubackup.errors import JujuBackupError, NotFoundError, UsageError
from jujubackup.host.base import Connector, Host
from jujubackup.local_archives import contents_of, read_sidecar, sidecar_path, write_sidecar
from jujubackup.operations.catalogs import connect_catalog
from jujubackup.profiles import DEFAULT_BACKUP_DIR
from jujubackup.sources import Source, plaintext
from jujubackup.stores import Store
from jujubackup.ui import UI


@dataclass(frozen=True)
class VerifyRequest:
    """`target`: FILE or ID; with `store`, an ID (prefix, `latest`) in that store; `identity` decrypts."""

    target: str
    backup_dir: str = DEFAULT_BACKUP_DIR
    store: Store | None = None
    identity: Path | None = None


def is_local(target: str) -> bool:
    """Return True when `target` names a local file: an existing path, or text with a `/` or a
    `.tar.gz`/`.tgz` suffix (backup IDs have neither). Else it is a backup ID on a controller."""
    return os.path.lexists(target) or "/" in target or target.endswith((".tar.gz", ".tgz"))


def check_local_file(path: Path) -> None:
    """Given a local FILE target, return if it is a regular file (or a link to one).
    Raise NotFoundError (exit 5) if it does not exist, UsageError (exit 2) for a directory or other."""
    if path.is_file():
        return
    if path.is_dir():
        raise UsageError(f"{path} is a directory, not a backup archive",
                         hint="give the path of a juju-backup .tar.gz file, or a backup ID")
    if not os.path.lexists(path) or path.is_symlink():
        raise NotFoundError(f"file not found: {path}",
                            hint="give the path of a juju-backup .tar.gz file, or a stored backup ID")
    raise UsageError(f"{path} is not a regular file", hint="give the path of a juju-backup .tar.gz file")


def verify_local(path: Path) -> VerifyReport:
    """Given a local archive, return its VerifyReport (against its sidecar's size/SHA-256 if any).

    A sidecar is refreshed when the archive verifies. Raise NotFoundError if the file is missing.
    """
    sidecar = read_sidecar(path)
    sha = str(sidecar.get("sha256") or "") if sidecar else ""
    size = sidecar.get("size") if sidecar else None
    report = verify_archive(path, expected_sha256=sha or None,
                            expected_size=int(size) if isinstance(size, int) and size >= 0 else None)
    if sidecar is not None:
        report.add("sidecar", True, f"expected digests from {sidecar_path(path).name}")
        if report.ok:
            write_sidecar(path, sidecar, sha, full=True, contents=contents_of(report))
    return report


def verify_source(source: Source) -> VerifyReport:
    """Given an encrypted local file or a store's copy, stream its plaintext through the verifier
    (decrypted as it is read, nothing written) against the sidecar's SHA-256 and size; return the
    report (a corrupt or truncated encrypted copy fails its "readable" check). Raise DecryptError (8)
    when the identity opens none of its recipients, UsageError (2) without --identity."""
    with plaintext(source) as opened:
        report = verify_stream(opened.stream, label=opened.label, expected_sha256=opened.sha256,
                               expected_size=opened.size)
    if opened.sha256:
        report.add("sidecar", True, "expected digests from the sidecar")
    if opened.encrypted:
        report.add("decrypt", True, "age: every chunk authenticated, the last one as last")
    return report


def verify_stored(host: Host, request: VerifyRequest, ui: UI) -> VerifyReport:
    """Given a connected controller, verify the stored copy of backup `request.target` in place.

    The archive streams through the verifier (nothing is written locally). Raise NotFoundError for an
    unknown ID, ConnectError if the connection drops.
    """
    record = Catalog(host, request.backup_dir).get(request.target)
    with ui.transfer(f"verify {record.id[:15]}", record.size) as advance:
        report = _verify_piped(
            lambda sink: host.get(record.path, sink, progress=advance, size=record.size),
            label=f"{host.name}:{record.path}", sha256=record.sha256 or None, size=record.size,
        )
    return report


def _verify_piped(produce: Callable[[BinaryIO], int], *, label: str, sha256: str | None,
                  size: int | None) -> VerifyReport:
    """Run `produce(sink)` in a thread writing into a pipe that verify_stream reads; return the report.

    Re-raise what the producer raised (e.g. ConnectError) after the verifier finished.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink:
                produce(sink)
        except (JujuBackupError, OSError) as err:
            failure.append(err)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        report = verify_stream(source, label=label, expected_sha256=sha256, expected_size=size)
    thread.join()
    if failure and not isinstance(failure[0], BrokenPipeError):
        raise failure[0]
    return report


def run_verify(via: Connector, ui: UI, request: VerifyRequest) -> VerifyReport:
    """Verify a local FILE (an age-encrypted one decrypted as it is read), a store's copy, or connect
    and verify the stored copy of an ID. Return the report."""
    if request.store is not None:
        ui.info(f"verifying {request.target} in store {request.store.name} ({request.store.describe()})")
        return verify_source(Source(store=request.store, ref=request.target, identity=request.identity))
    if is_local(request.target):
        check_local_file(Path(request.target))
        ui.info(f"verifying {request.target}")
        if crypt.is_age_file(Path(request.target)):
            return verify_source(Source(path=Path(request.target), identity=request.identity))
        return verify_local(Path(request.target))
    host = connect_catalog(via, ui, request.backup_dir, holding=[request.target])
    try:
        return verify_stored(host, request, ui)
    finally:
        host.close()
