"""rewrite_archive: copy an archive in one pass replacing selected members (or write only those:
an overlay)."""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, cast

from jujubackup.archive.hashing import _copy_hashing, _HashingWriter
from jujubackup.archive.layout import (
    MANIFEST,
    MAX_SMALL_MEMBER,
    ROOT_OVERLAY,
    ROOT_TAR,
    TOP,
    RewriteResult,
    Transform,
)
from jujubackup.archive.members import normalize_name
from jujubackup.archive.read import _read_capped, _rel
from jujubackup.archive.verify import STREAM_ERRORS, _err_text
from jujubackup.errors import VerifyError
from jujubackup.tarstream import GzipReader, MemberReader, iter_tar


def rewrite_archive(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    transforms: Mapping[str, Transform] | None = None,
    root_transforms: Mapping[str, Callable[[bytes], bytes]] | None = None,
    late_transforms: Mapping[str, Transform] | None = None,
    compresslevel: int = 6,
    tmp_dir: str | os.PathLike[str] | None = None,
    only_replaced: bool = False,
) -> RewriteResult:
    """Copy archive `src` to `dst` (created 0600) in one streaming pass, replacing members.

    `transforms` maps outer paths (relative to juju-backup/, e.g. "dump/juju/machines.bson") to a
    function reading the old content and writing the new; `root_transforms` maps root.tar member
    names to a function old bytes -> new bytes. `late_transforms` are like `transforms` but run
    after every other member was copied (the old content is spooled to a temp file and the member
    moves to the end of the archive): for a member whose rewrite depends on what other transforms
    found (the oplog). Other members are copied with their headers; the manifest (if any) is
    written last with updated entries. With `only_replaced`, `dst` is an OVERLAY: only the
    replaced outer members, and instead of root.tar a `root-overlay.tar` holding only the replaced
    root.tar members (headers kept), no manifest. Return the new digests and what was replaced.
    Raise VerifyError if `src` is unreadable; `dst` is removed on any error.
    """
    transforms = dict(transforms or {})
    root_transforms = {normalize_name(k): v for k, v in (root_transforms or {}).items()}
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out_raw:
            writer = _HashingWriter(out_raw)
            job = _Rewrite(transforms, root_transforms, dict(late_transforms or {}), tmp_dir, only_replaced)
            with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                job.run(src, cast(IO[bytes], gz))
        return RewriteResult(writer.digest(), tuple(job.replaced), tuple(job.root_replaced))
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


class _Rewrite:
    """One rewrite_archive pass."""

    def __init__(
        self,
        transforms: dict[str, Transform],
        root_transforms: dict[str, Callable[[bytes], bytes]],
        late_transforms: dict[str, Transform],
        tmp_dir: str | os.PathLike[str] | None,
        only_replaced: bool = False,
    ) -> None:
        self.only_replaced = only_replaced
        self.transforms = transforms
        self.root_transforms = root_transforms
        self.late_transforms = late_transforms
        self.spooled: list[tuple[tarfile.TarInfo, str, IO[bytes]]] = []
        self.stack = contextlib.ExitStack()
        self.tmp_dir = tmp_dir
        self.replaced: list[str] = []
        self.root_replaced: list[str] = []
        self.new_hashes: dict[str, tuple[int, str]] = {}
        self.manifest: tuple[tarfile.TarInfo, bytes] | None = None

    def run(self, src: str | os.PathLike[str], out: IO[bytes]) -> None:
        try:
            with (
                contextlib.ExitStack() as self.stack,
                open(src, "rb") as raw,
                tarfile.open(fileobj=out, mode="w|") as tout,
            ):
                for member, data in iter_tar(GzipReader(raw)):
                    self._member(tout, member, data)
                self._write_late(tout)
                if not self.only_replaced:
                    self._write_manifest(tout)
        except STREAM_ERRORS as err:
            raise VerifyError(f"archive {src} is truncated or corrupt ({_err_text(err)})") from err

    def _member(self, tout: tarfile.TarFile, member: tarfile.TarInfo, data: MemberReader | None) -> None:
        rel = _rel(member.name)
        if not member.isreg():
            if not self.only_replaced:
                tout.addfile(member)
            return
        if data is None:
            raise tarfile.ReadError(f"member {member.name!r} is a sparse file")
        fileobj = cast(IO[bytes], data)
        if rel == MANIFEST:
            self.manifest = (member, _read_capped(fileobj, MANIFEST, MAX_SMALL_MEMBER))
        elif rel in self.transforms:
            self._replace(tout, member, rel, lambda dst: self.transforms[rel](fileobj, dst))
            self.replaced.append(rel)
        elif rel in self.late_transforms:
            spool = self.stack.enter_context(tempfile.TemporaryFile(dir=self.tmp_dir))  # noqa: SIM115
            self.spooled.append((member, rel, spool))
            _copy_hashing(fileobj, spool)
        elif rel == ROOT_TAR and self.root_transforms:
            name = f"{TOP}/{ROOT_OVERLAY}" if self.only_replaced else member.name
            self._replace(tout, member, rel, lambda dst: self._rewrite_root(fileobj, dst), name=name)
            self.replaced.append(rel)
        elif not self.only_replaced:
            tout.addfile(member, fileobj)

    def _replace(
        self,
        tout: tarfile.TarFile,
        member: tarfile.TarInfo,
        rel: str,
        produce: Callable[[IO[bytes]], None],
        *,
        name: str | None = None,
    ) -> None:
        """Write the new content to a temp file (the tar header needs its size), then add it."""
        with tempfile.TemporaryFile(dir=self.tmp_dir) as tmp:
            produce(tmp)
            tmp.seek(0)
            size, sha = _copy_hashing(tmp)
            tmp.seek(0)
            info = _copy_info(member, size, name=name)
            tout.addfile(info, tmp)
        self.new_hashes[rel] = (size, sha)

    def _rewrite_root(self, src: IO[bytes], dst: IO[bytes]) -> None:
        with tarfile.open(fileobj=dst, mode="w|", format=tarfile.GNU_FORMAT) as tout:
            for m, f in iter_tar(src):
                name = normalize_name(m.name)
                if m.isreg() and f is None:
                    raise tarfile.ReadError(f"root.tar member {m.name!r} is a sparse file")
                if f is not None and name in self.root_transforms:
                    data = self.root_transforms[name](f.read())
                    info = _copy_info(m, len(data))
                    tout.addfile(info, _BytesReader(data))
                    self.root_replaced.append(name)
                elif not self.only_replaced:
                    tout.addfile(m, f)

    def _write_late(self, tout: tarfile.TarFile) -> None:
        """Run the late transforms over their spooled members and add the results."""
        for member, rel, spool in self.spooled:
            spool.seek(0)
            transform = self.late_transforms[rel]
            self._replace(tout, member, rel, functools.partial(transform, spool))
            self.replaced.append(rel)

    def _write_manifest(self, tout: tarfile.TarFile) -> None:
        if self.manifest is None:
            return
        member, data = self.manifest
        doc = json.loads(data)
        for entry in doc.get("files", []):
            if entry.get("path") in self.new_hashes:
                entry["size"], entry["sha256"] = self.new_hashes[entry["path"]]
        new = (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()
        tout.addfile(_copy_info(member, len(new)), _BytesReader(new))


class _BytesReader:
    """Minimal readable stream over bytes (what tarfile.addfile needs)."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        chunk = bytes(self.data[self.pos : end])
        self.pos = end
        return chunk


def _copy_info(member: tarfile.TarInfo, size: int, *, name: str | None = None) -> tarfile.TarInfo:
    """Return a copy of a member's header with a new size (and name)."""
    info = tarfile.TarInfo(name or member.name)
    for attr in ("mode", "uid", "gid", "uname", "gname", "mtime", "type"):
        setattr(info, attr, getattr(member, attr))
    info.pax_headers = dict(member.pax_headers)
    info.size = size
    return info


