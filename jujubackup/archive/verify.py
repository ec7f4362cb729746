"""verify_archive / verify_stream: one pass over an archive checking digests, members, metadata,
manifest and BSON."""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, cast

from jujubackup.archive.bsonstream import BSON_POOL_MIN, bson_pool, check_bson_stream
from jujubackup.archive.hashing import _HashingReader, _SourceGuard
from jujubackup.archive.layout import (
    DUMP_DIR,
    MANIFEST,
    MAX_SMALL_MEMBER,
    METADATA,
    ROOT_TAR,
    TOP,
    MemberInfo,
    VerifyReport,
)
from jujubackup.archive.manifest import compare_manifest, parse_manifest
from jujubackup.archive.members import _kind, _MemberGuard, normalize_name
from jujubackup.errors import JujuBackupError, NotFoundError, VerifyError
from jujubackup.metadata import (
    BackupMetadata,
    count_controller_machines,
    derive_ha_nodes,
    identity_problems,
    parse_metadata_json,
)
from jujubackup.tarstream import INFLATE_ERROR, GzipReader, MemberReader, iter_tar

STREAM_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, INFLATE_ERROR)


def verify_archive(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    expected_sha1_b64: str | None = None,
    expected_size: int | None = None,
    sha1: bool = True,
    workers: bool = True,
) -> VerifyReport:
    """Given an archive file, verify it in one streaming pass and return the VerifyReport.

    `sha1` False skips Juju's SHA-1 of the archive (digest.sha1_b64 is "" then) unless one is
    expected; `workers` False decodes big dump files here instead of in worker processes (for a
    caller whose other work needs the CPUs more, e.g. a verification running while the archive is sent).

    Checks: readable gzip+tar (CRC included), digests against the expectations given, member safety
    (outer and root.tar, root.tar allowlist), metadata.json parses (FormatVersion 0/1) with a valid
    ID/ModelUUID/ControllerUUID when set (metadata.identity_problems), root.tar and dump/ exist, dump
    .bson files are well-formed, manifest entries match. Raise NotFoundError if the file is missing;
    never raise for a bad archive (call `report.raise_for_failures()`).
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"archive {p} not found", "give the path of a juju-backup .tar.gz")
    with p.open("rb") as raw:
        return verify_stream(
            raw,
            label=str(p),
            expected_sha256=expected_sha256,
            expected_sha1_b64=expected_sha1_b64,
            expected_size=expected_size,
            sha1=sha1,
            workers=workers,
        )


def verify_stream(
    raw: IO[bytes],
    *,
    label: str,
    expected_sha256: str | None = None,
    expected_sha1_b64: str | None = None,
    expected_size: int | None = None,
    sha1: bool = True,
    workers: bool = True,
) -> VerifyReport:
    """Like verify_archive, over a readable binary stream positioned at the archive's first byte."""
    report = VerifyReport(label=label)
    reader = _HashingReader(raw, sha1=sha1 or bool(expected_sha1_b64), threaded=True)
    state = _VerifyState(report, workers=workers)
    try:
        try:
            # iter_tar reads to the end of the gzip stream: zlib checks its CRC and length
            for member, data in iter_tar(GzipReader(reader)):
                state.member(member, data)
            report.add("readable", True, "gzip and tar streams read to the end, gzip CRC matches")
            complete = True
        except STREAM_ERRORS as err:
            complete = False
            report.add("readable", False, f"archive is truncated or corrupt ({_err_text(err)})")
        except JujuBackupError as err:
            complete = False
            report.add("readable", False, err.message)
        finally:
            state.close()
        reader.drain()
        report.digest = reader.digest()
    finally:
        reader.close()  # the hashing thread stops also when verifying was interrupted
    _check_digests(report, expected_sha256, expected_sha1_b64, expected_size)
    state.finish(complete=complete)
    return report


def _err_text(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) < 200 else text[:200] + "…"


def _check_digests(report: VerifyReport, sha256: str | None, sha1_b64: str | None, size: int | None) -> None:
    """Compare the archive digests with the expected ones given (the in-archive metadata cannot
    hold the archive's own checksum; callers pass the catalog's or the sidecar's)."""
    digest = report.digest
    assert digest is not None
    if size is not None:
        report.add("size", digest.size == size, f"size {digest.size} bytes (expected {size})")
    if sha256:
        ok = digest.sha256 == sha256.lower()
        report.add("sha256", ok, f"SHA-256 {digest.sha256}" + ("" if ok else f" does not match {sha256}"))
    if sha1_b64:
        ok = digest.sha1_b64 == sha1_b64
        report.add("sha1", ok, f"SHA-1 {digest.sha1_b64}" + ("" if ok else f" does not match {sha1_b64}"))


class _VerifyState:
    """Per-pass state of verify_stream: member checks, hashes, metadata, HANodes inputs."""

    def __init__(self, report: VerifyReport, *, workers: bool = True) -> None:
        self.report = report
        self.workers = workers
        self.guard = _MemberGuard(absolute_links_ok=False)
        self.root_guard = _MemberGuard(absolute_links_ok=True, state_files_only=True)
        self.hashes: dict[str, tuple[int, str]] = {}
        self.unsafe: list[str] = []
        self.bad_bson: list[str] = []
        self.metadata_error: str | None = None
        self.manifest_raw: bytes | None = None
        self.controller_nodes: int | None = None
        self.machine_counts: dict[str, int] = {}
        self.root_seen = False
        self.root_error: str | None = None
        self.dump_seen = False
        self.pool: Executor | None = None
        self.pool_tried = False

    def close(self) -> None:
        """Shut the BSON decode pool down if one was started."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _pool_for(self, size: int) -> Executor | None:
        """Return the decode pool for a dump file of `size` bytes (started at the first big file)."""
        if self.workers and size >= BSON_POOL_MIN and not self.pool_tried:
            self.pool_tried = True
            self.pool = bson_pool()
        return self.pool

    def member(self, member: tarfile.TarInfo, data: MemberReader | None) -> None:
        """Check one outer member and read its content (`data`) if it is a regular file."""
        name = normalize_name(member.name)
        problem = self.guard.problem(member)
        if problem is None and name != TOP and not name.startswith(TOP + "/"):
            problem = f"is outside the {TOP}/ folder"
        rel = name[len(TOP) + 1 :] if name.startswith(TOP + "/") else name
        if problem:
            self.unsafe.append(f"member {member.name!r} {problem}")
        if rel == DUMP_DIR or rel.startswith(DUMP_DIR + "/"):
            self.dump_seen = True
        info = MemberInfo(rel, _kind(member), member.size, member.mode, member.linkname)
        if member.isreg() and not problem:
            if data is None:  # a sparse member: not something an archive of ours or Juju's holds
                self.unsafe.append(f"member {member.name!r} is a sparse file")
            else:
                info = MemberInfo(
                    rel, "file", member.size, member.mode, "", self._read_file(rel, data, member.size)
                )
        self.report.members.append(info)

    def _read_file(self, rel: str, fileobj: IO[bytes] | MemberReader, size: int) -> str:
        """Read one outer regular file, checking it by kind; return its sha256 hex."""
        hashed = _HashingReader(fileobj, sha1=False)
        if rel == METADATA:
            self._read_metadata(hashed.read(MAX_SMALL_MEMBER + 1))
        elif rel == MANIFEST:
            self.manifest_raw = hashed.read(MAX_SMALL_MEMBER + 1)
        elif rel == ROOT_TAR:
            self._read_root_tar(hashed)
        elif rel.startswith(DUMP_DIR + "/") and rel.endswith((".bson", ".bson.gz")):
            self._read_bson(rel, hashed, size)
        hashed.drain()
        self.hashes[rel] = (hashed.size, hashed.sha256.hexdigest())
        return hashed.sha256.hexdigest()

    def _read_metadata(self, data: bytes) -> None:
        try:
            self.report.metadata = parse_metadata_json(data)
        except VerifyError as err:
            self.metadata_error = err.message

    def _read_root_tar(self, stream: Any) -> None:
        self.root_seen = True
        source = _SourceGuard(stream)
        try:
            for m, _data in iter_tar(source):
                problem = self.root_guard.problem(m)
                if problem:
                    self.unsafe.append(f"root.tar member {m.name!r} {problem}")
                self.report.root_members.append(
                    MemberInfo(normalize_name(m.name), _kind(m), m.size, m.mode, m.linkname)
                )
        except tarfile.TarError as err:
            if source.failed:
                raise
            self.root_error = f"root.tar is not a readable tar ({_err_text(err)})"

    def _read_bson(self, rel: str, stream: Any, size: int) -> None:
        """Check one dump file (`.bson`, or `.bson.gz` from `mongodump --gzip`) document by document;
        record a bad file, or feed the HANodes inputs. Errors of the outer stream propagate."""
        self.report.dump_files.append(rel)
        base = rel.removesuffix(".gz")
        on_doc: Callable[[dict[str, Any]], None] | None = None
        machines: list[dict[str, Any]] = []
        if base == f"{DUMP_DIR}/juju/machines.bson":
            on_doc = lambda d: machines.append({k: d.get(k) for k in ("jobs", "model-uuid", "env-uuid")})  # noqa: E731
        source = _SourceGuard(stream)
        try:
            if rel.endswith(".gz"):
                count = check_bson_stream(cast(IO[bytes], GzipReader(source)), on_doc)
            else:
                count = check_bson_stream(cast(IO[bytes], source), on_doc, pool=self._pool_for(size))
        except (ValueError, EOFError, OSError, zlib.error, INFLATE_ERROR) as err:
            if source.failed:
                raise
            self.bad_bson.append(f"{rel} is not well-formed BSON: {_err_text(err)}")
            return
        if base == f"{DUMP_DIR}/juju/controllerNodes.bson":
            self.controller_nodes = count
        if machines:
            self.machine_counts = count_controller_machines(machines)

    def finish(self, *, complete: bool) -> None:
        """Record the checks that need the whole pass. When the stream broke (`complete` False),
        only the problems already found are recorded: absent members were maybe never reached."""
        r = self.report
        for name, problem in self.root_guard.late_link_problems():
            msg = f"root.tar member {name!r} {problem}"
            if msg not in self.unsafe:
                self.unsafe.append(msg)
        for msg in self.unsafe:
            r.add("members", False, msg)
        for msg in self.bad_bson:
            r.add("dump", False, msg)
        if self.metadata_error:
            r.add("metadata", False, self.metadata_error)
        if not complete:
            return
        if not self.unsafe:
            r.add(
                "members",
                True,
                f"{len(r.members)} members and {len(r.root_members)} root.tar members "
                "stay inside their root (no absolute paths, '..', escaping links or devices)",
            )
        self._finish_metadata()
        self._finish_layout()
        self._finish_manifest()

    def _finish_metadata(self) -> None:
        r = self.report
        if self.metadata_error:
            return
        if r.metadata is None:
            r.add("metadata", False, f"{TOP}/{METADATA} is missing")
        else:
            md = r.metadata
            bad_ids = identity_problems(md)
            for msg in bad_ids:
                r.add("metadata", False, msg)
            if bad_ids:
                return
            if md.ha_nodes is None:
                ha = derive_ha_nodes(self.controller_nodes, self.machine_counts, md.model_uuid)
                r.metadata = md = _with_ha_nodes(md, ha)
            r.add(
                "metadata",
                True,
                f"metadata FormatVersion {md.format_version}, machine {md.machine!r}, "
                f"Juju {md.version}, HANodes {md.ha_nodes}",
            )

    def _finish_layout(self) -> None:
        r = self.report
        if not self.root_seen:
            r.add("root.tar", False, f"{TOP}/{ROOT_TAR} is missing (the archive has no state files)")
        elif self.root_error:
            r.add("root.tar", False, self.root_error)
        else:
            r.add("root.tar", True, f"root.tar has {len(r.root_members)} members")
        if not self.dump_seen:
            r.add("dump", False, f"{TOP}/{DUMP_DIR}/ is missing (the archive has no database dump)")
        elif not self.bad_bson:
            r.add("dump", True, f"{len(r.dump_files)} dump .bson files are well-formed BSON")

    def _finish_manifest(self) -> None:
        r = self.report
        if self.manifest_raw is None:
            r.add("manifest", True, "no manifest.json (an archive made by Juju): member checksums not listed")
            return
        try:
            r.manifest = parse_manifest(self.manifest_raw)
        except VerifyError as err:
            r.add("manifest", False, err.message)
            return
        problems = compare_manifest(r.manifest, self.hashes)
        for msg in problems:
            r.add("manifest", False, msg)
        if not problems:
            r.add("manifest", True, f"all {len(r.manifest['files'])} manifest entries match (size, SHA-256)")


def _with_ha_nodes(md: BackupMetadata, ha: int) -> BackupMetadata:
    """Return a copy of `md` with HANodes set."""
    return replace(md, ha_nodes=ha)


