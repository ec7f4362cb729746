"""Build small juju-backup archives in tmp dirs for unit tests (test code, never shipped)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bson

from jujubackup.archive import ManifestEntry, build_manifest
from tests.paths import FIXTURES_28, MISSING_ROOT_28, VALID_28

FIXTURES = FIXTURES_28
VALID = VALID_28
MISSING_ROOT = MISSING_ROOT_28

MODEL_UUID = "e2a6a1e5-abea-4393-8593-5a45ae53ab97"

V1_METADATA = {
    "ID": "",
    "FormatVersion": 1,
    "Checksum": "",
    "ChecksumFormat": "",
    "Size": 0,
    "Stored": "0001-01-01T00:00:00Z",
    "Started": "2026-11-26T06:00:01.123456789Z",
    "Finished": "2026-11-26T06:00:09Z",
    "Notes": "unit test",
    "ModelUUID": MODEL_UUID,
    "Machine": "0",
    "Hostname": "ctl0",
    "Version": "2.9.42",
    "Series": "focal",
    "ControllerUUID": "8a293c6a-855b-47fd-8201-affdf29c9605",
    "HANodes": 1,
    "ControllerMachineID": "0",
    "ControllerMachineInstanceID": "ctl0",
}

AGENT_CONF = """# format 2.0
tag: machine-0
datadir: /var/lib/juju
statepassword: FAKEstatePASSWORDxxxxxxx
apiaddresses:
- 10.77.116.68:17070
apipassword: FAKEstatePASSWORDxxxxxxx
apiport: 17070
stateport: 37017
"""


def file_info(name: str, data: bytes, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    return info


def special_info(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    # a directory needs x to be entered: 0644 only worked for root, who ignores modes
    info.mode = {tarfile.SYMTYPE: 0o777, tarfile.DIRTYPE: 0o755}.get(kind, 0o644)
    info.mtime = 1_700_000_000
    return info


def dir_info(name: str) -> tarfile.TarInfo:
    return special_info(name, tarfile.DIRTYPE)


Member = tuple[tarfile.TarInfo, bytes | None]


def tar_bytes(members: list[Member], *, compress: bool = False) -> bytes:
    """Return an (optionally gzipped) tar of the given members, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def bson_file(*docs: dict) -> bytes:
    return b"".join(bson.encode(d) for d in docs)


@dataclass
class ArchiveSpec:
    """What goes into a test archive; tweak the fields, then `write(path)`."""

    metadata: dict | None = field(default_factory=lambda: dict(V1_METADATA))
    root: list[Member] = field(default_factory=lambda: default_root())
    dump: dict[str, bytes] = field(
        default_factory=lambda: {
            "juju/machines.bson": bson_file({"_id": f"{MODEL_UUID}:0", "machineid": "0", "jobs": [2, 1]}),
            "juju/machines.metadata.json": b'{"options":{},"indexes":[]}',
            "oplog.bson": b"",
        }
    )
    extra: list[Member] = field(default_factory=list)
    with_root: bool = True
    with_manifest: bool = True
    manifest_override: dict | None = None
    metadata_text: bytes | None = None
    """Raw metadata.json bytes (wins over `metadata`): for JSON that json.dumps cannot write."""
    manifest_text: bytes | None = None
    """Raw manifest.json bytes (wins over the built manifest)."""

    def files(self) -> dict[str, bytes]:
        """Return the regular files of juju-backup/ (relative paths), manifest excluded."""
        out: dict[str, bytes] = {}
        if self.metadata_text is not None:
            out["metadata.json"] = self.metadata_text
        elif self.metadata is not None:
            out["metadata.json"] = json.dumps(self.metadata).encode()
        if self.with_root:
            out["root.tar"] = tar_bytes(self.root)
        for path, data in self.dump.items():
            out[f"dump/{path}"] = data
        return out

    def write(self, path: Path) -> Path:
        files = self.files()
        members: list[Member] = [(dir_info("juju-backup"), None), (dir_info("juju-backup/dump"), None)]
        for rel, data in files.items():
            members.append((file_info(f"juju-backup/{rel}", data), data))
        members.extend(self.extra)
        if self.with_manifest:
            manifest = self.manifest_override or build_manifest(
                [ManifestEntry(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()],
                tool_version="0.1.0",
                consistency="online-oplog",
                db_unavailable_seconds={"juju-db": 0.0},
            )
            data = self.manifest_text if self.manifest_text is not None else json.dumps(manifest).encode()
            members.append((file_info("juju-backup/manifest.json", data), data))
        path.write_bytes(tar_bytes(members, compress=True))
        return path


def default_root() -> list[Member]:
    """Return root.tar members of a minimal controller: agent.conf, a tools dir, the machine-0 symlink."""
    conf = AGENT_CONF.encode()
    jujud = b"#!/bin/sh\n"
    return [
        (dir_info("var/lib/juju/agents/machine-0"), None),
        (file_info("var/lib/juju/agents/machine-0/agent.conf", conf, 0o600), conf),
        (dir_info("var/lib/juju/tools/2.9.42-focal-amd64"), None),
        (file_info("var/lib/juju/tools/2.9.42-focal-amd64/jujud", jujud, 0o755), jujud),
        (
            special_info(
                "var/lib/juju/tools/machine-0", tarfile.SYMTYPE, "/var/lib/juju/tools/2.9.42-focal-amd64"
            ),
            None,
        ),
    ]


# ---------------------------------------------------------------------------------------------
# hostile members: what tarfile cannot write itself


class _FixedHeader(tarfile.TarInfo):
    """A TarInfo whose header is written in `forced_format` (PAX for GNU.sparse.* pax headers, which
    a GNU_FORMAT tar drops), or patched by `patch` after it is built (a GNU old-style sparse header)."""

    forced_format: int | None = None
    patch: Callable[[bytearray], None] | None = None

    def tobuf(self, format: int | None = tarfile.DEFAULT_FORMAT, encoding: str | None = tarfile.ENCODING,
              errors: str = "surrogateescape") -> bytes:
        buf = bytearray(super().tobuf(self.forced_format or format, encoding, errors))
        if self.patch is not None:
            self.patch(buf)
        return bytes(buf)


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def gnu_sparse_info(name: str, data: bytes, *, real_size: int = 1 << 20) -> Member:
    """Return a GNU old-style sparse member (typeflag 'S', as `tar --sparse` writes in GNU format):
    `data` is stored at offset 0, the file is `real_size` bytes long (a hole after the data)."""
    info = _FixedHeader(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_700_000_000

    def patch(buf: bytearray) -> None:
        # the last header block (after any GNU long-name blocks): ustar/GNU layout, tar(5)
        h = len(buf) - 512
        buf[h + 156 : h + 157] = tarfile.GNUTYPE_SPARSE
        buf[h + 386 : h + 398] = _octal(0, 12)  # sparse[0].offset
        buf[h + 398 : h + 410] = _octal(len(data), 12)  # sparse[0].numbytes
        buf[h + 482 : h + 483] = b"\0"  # isextended
        buf[h + 483 : h + 495] = _octal(real_size, 12)  # realsize
        buf[h + 148 : h + 156] = b" " * 8
        buf[h + 148 : h + 156] = b"%06o\0 " % sum(buf[h : h + 512])

    info.patch = patch
    return info, data


def pax_sparse_info(name: str, data: bytes, *, version: str = "1.0", real_size: int = 1 << 20) -> Member:
    """Return a pax sparse member (GNU tar's `--sparse --format=pax`): version "1.0" keeps the map in
    the data, "0.1" in GNU.sparse.map, "0.0" in GNU.sparse.offset/numbytes, "2.0" is a version nobody
    defined (GNU tar would still act on GNU.sparse.* keys; tarfile does not)."""
    info = _FixedHeader(name)
    info.forced_format = tarfile.PAX_FORMAT
    info.mode = 0o644
    info.mtime = 1_700_000_000
    if version == "1.0":
        head = f"1\n0\n{len(data)}\n".encode().ljust(512, b"\0")
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": name,
                            "GNU.sparse.realsize": str(real_size)}
        payload = head + data
    elif version == "0.1":
        info.pax_headers = {"GNU.sparse.map": f"0,{len(data)}", "GNU.sparse.size": str(real_size),
                            "GNU.sparse.numblocks": "1"}
        payload = data
    elif version == "0.0":
        info.pax_headers = {"GNU.sparse.size": str(real_size), "GNU.sparse.numblocks": "1",
                            "GNU.sparse.offset": "0", "GNU.sparse.numbytes": str(len(data))}
        payload = data
    else:
        info.pax_headers = {"GNU.sparse.major": "2", "GNU.sparse.minor": "0",
                            "GNU.sparse.realsize": str(real_size)}
        payload = data
    info.size = len(payload)
    return info, payload
