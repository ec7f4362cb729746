"""Reading selected members (outer and root.tar) of an archive, capped in size."""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import IO, Any, cast

from jujubackup.archive.layout import MAX_SMALL_MEMBER, ROOT_TAR, TOP, MemberContents
from jujubackup.archive.members import normalize_name
from jujubackup.archive.verify import STREAM_ERRORS, _err_text
from jujubackup.errors import VerifyError
from jujubackup.tarstream import GzipReader, MemberReader, iter_tar


def read_members(
    path: str | os.PathLike[str],
    names: Iterable[str] = (),
    root_names: Iterable[str] = (),
    *,
    max_bytes: int = MAX_SMALL_MEMBER,
) -> MemberContents:
    """Given an archive and outer member paths (relative to juju-backup/) and root.tar member names,
    return their contents in one streaming pass. Absent members are absent from the result.
    Raise VerifyError if the archive is unreadable or a wanted member is larger than `max_bytes`."""
    try:
        with open(path, "rb") as raw:
            return read_members_stream(raw, names, root_names, max_bytes=max_bytes, label=f"archive {path}")
    except STREAM_ERRORS as err:
        raise VerifyError(f"archive {path} is truncated or corrupt ({_err_text(err)})") from err


def read_members_stream(
    raw: IO[bytes] | Any,
    names: Iterable[str] = (),
    root_names: Iterable[str] = (),
    *,
    max_bytes: int = MAX_SMALL_MEMBER,
    label: str = "the archive",
) -> MemberContents:
    """read_members over a readable stream of the archive (e.g. an age-encrypted copy decrypted as it
    is read); reading stops once every wanted member was read. Raise VerifyError as read_members."""
    wanted = set(names)
    root_wanted = {normalize_name(n.lstrip("/")) for n in root_names}
    files: dict[str, bytes] = {}
    root_files: dict[str, bytes] = {}
    try:
        for member, data in iter_tar(GzipReader(raw)):
            rel = _rel(member.name)
            if data is None or (rel not in wanted and not (rel == ROOT_TAR and root_wanted)):
                continue
            if rel == ROOT_TAR and root_wanted:
                root_files.update(_read_root_members(data, root_wanted, max_bytes))
                root_wanted = set()
            elif rel in wanted:
                files[rel] = _read_capped(data, rel, max_bytes)
            if not root_wanted and wanted <= files.keys():
                break  # everything asked for is read: the rest of the archive is not needed
    except STREAM_ERRORS as err:
        raise VerifyError(f"{label} is truncated or corrupt ({_err_text(err)})") from err
    return MemberContents(files, root_files)


def slim_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep: Collection[str]) -> None:
    """Given an archive and outer member paths (relative to juju-backup/), write to `dst` (created
    0600) a gzip archive (stored blocks: no compression work) of only those regular members that
    are present, with their headers and in their order, in one streaming pass over `src`. A later
    pass over `dst` (read_members, rewrite_archive with only_replaced) then skips re-reading the
    big members (blobstore, logs) it does not need. Raise VerifyError if `src` is unreadable;
    `dst` is removed on any error."""
    wanted = set(keep)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with (
            os.fdopen(fd, "wb") as out_raw,
            gzip.GzipFile(fileobj=out_raw, mode="wb", compresslevel=0, mtime=0) as gz,
            tarfile.open(fileobj=cast(IO[bytes], gz), mode="w|") as tout,
            open(src, "rb") as raw,
        ):
            for member, data in iter_tar(GzipReader(raw)):
                if data is not None and member.isreg() and _rel(member.name) in wanted:
                    tout.addfile(member, cast(IO[bytes], data))
    except STREAM_ERRORS as err:
        Path(dst).unlink(missing_ok=True)
        raise VerifyError(f"archive {src} is truncated or corrupt ({_err_text(err)})") from err
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


def _rel(name: str) -> str:
    """Return an outer member name relative to juju-backup/."""
    name = normalize_name(name)
    return name[len(TOP) + 1 :] if name.startswith(TOP + "/") else name


def _read_capped(fileobj: IO[bytes] | MemberReader, label: str, max_bytes: int) -> bytes:
    data = fileobj.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise VerifyError(f"archive member {label} is larger than {max_bytes} bytes; not read into memory")
    return data


def _read_root_members(stream: MemberReader, wanted: set[str], max_bytes: int) -> dict[str, bytes]:
    out = {}
    for m, data in iter_tar(stream):
        name = normalize_name(m.name)
        if data is not None and name in wanted:
            out[name] = _read_capped(data, f"root.tar:{name}", max_bytes)
            if len(out) == len(wanted):
                break
    return out


def agent_conf_path(machine_id: str) -> str:
    """Return the root.tar member name of machine N's agent.conf."""
    return f"var/lib/juju/agents/machine-{machine_id}/agent.conf"


def read_agent_conf(path: str | os.PathLike[str], machine_id: str) -> str:
    """Given an archive and the backed-up machine id, return its agent.conf text from root.tar.
    Raise VerifyError if root.tar has no such file."""
    name = agent_conf_path(machine_id)
    found = read_members(path, root_names=[name]).root_files
    if name not in found:
        raise VerifyError(f"root.tar of {path} has no {name}", "is this the backup of another machine?")
    return found[name].decode("utf-8")


