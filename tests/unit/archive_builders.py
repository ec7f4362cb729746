"""Build small juju-backup archives in tmp dirs for unit tests (test code, never shipped)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
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
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
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

    def files(self) -> dict[str, bytes]:
        """Return the regular files of juju-backup/ (relative paths), manifest excluded."""
        out: dict[str, bytes] = {}
        if self.metadata is not None:
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
            data = json.dumps(manifest).encode()
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
