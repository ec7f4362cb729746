"""The `juju-backup/` archive (DESIGN.md §4): inspect, verify, read, rewrite, extract safely. PURE.

A package by concern (layout, hashing, members, bsonstream, verify, manifest, read, rewrite,
extract); every public name is importable from `jujubackup.archive` as before.

Local file I/O only (no network). Every function streams: the outer `.tar.gz` is read once through
`tarstream` (zlib's gzip framing checks the CRC and length; tar headers are parsed by `tarfile`; a
member's data is read straight from the stream), `root.tar` is read as a nested stream, dump files
are read document by document. Memory stays constant whatever the archive size.

Layout (paths below are relative to the top folder `juju-backup/`):
    metadata.json   Juju metadata (FormatVersion 0 or 1; see metadata.py)
    root.tar        uncompressed tar of state files, names without the leading "/"
    dump/           mongodump output: <db>/<coll>.bson + <coll>.metadata.json, oplog.bson
    manifest.json   ours (absent in Juju's archives): {"format-version": 1, "tool": "jujubackup <ver>",
                    "consistency": mode, "db-unavailable-seconds": {...},
                    "files": [{"path", "size", "sha256"}]}; lists every regular file except itself

Safety rules (used by `verify` and by `safe_extract`):
- member names are relative, without `..` components; outer members live under `juju-backup/`;
- only regular files, directories, symlinks and hard links; devices and FIFOs are refused;
- no setuid, setgid or world-writable member (symlinks aside: their mode is never applied): root.tar
  is extracted with `tar -p --same-owner` as root, so such a member would be a root-owned hole;
- no sparse member (GNU 'S' headers, pax GNU.sparse.* of any version): neither Juju nor jujubackup
  writes one, tarfile and GNU tar read them differently, and restore's untar would fail on it late;
- no duplicate member names (a later member could replace a checked one);
- a symlink's target must resolve inside the root. In root.tar an ABSOLUTE target (Juju's
  `var/lib/juju/tools/machine-0 -> /var/lib/juju/tools/2.8-…`) is interpreted relative to the
  extraction root, because root.tar is extracted onto `/`: it is allowed when it stays inside.
  In the outer archive absolute targets are refused. A `..` may not climb out of another symlink;
- no member may be written through a symlink of the same archive; hard-link sources must be safe
  member paths.

root.tar allowlist (verify and `safe_extract(..., state_files_only=True)`, which restore uses for
root.tar): root.tar is extracted onto `/` as root, so every member must be a Juju state file of
an era we read (reference juju-backups.md §3.5/§3.6; :data:`ROOT_STATE_PATTERNS`):
`var/lib/juju/agents/machine-*/**`, `var/lib/juju/tools/**`, `var/lib/juju/init/**`,
`var/lib/juju/{server.pem,system-identity,shared-secret,nonce.txt}`, `var/snap/juju-db/common/**`,
`home/ubuntu/.ssh/authorized_keys` (an agent dir must be named by a machine tag: `machine-0`,
`machine-0-lxd-1`; metadata.is_machine_tag_suffix), plus the directory entries leading to them
(`var`, `var/lib`, `var/lib/juju`, `home/ubuntu/.ssh`, …, directories only). Symlink targets and
hard-link sources must be allowed paths too. Anything else (`etc/cron.d/x`,
`root/.ssh/authorized_keys`, systemd units) fails verification ("root.tar member 'etc/cron.d/x'
is not a Juju state file") and is never extracted.

Public API:
    verify_archive(path, *, expected_sha256=None, expected_sha1_b64=None, expected_size=None)
        -> VerifyReport                       one pass: digests, members, metadata, manifest, BSON
    verify_stream(stream, *, label, ...) -> VerifyReport   the same over any readable binary stream
    VerifyReport.ok / .failures / .raise_for_failures()    raise VerifyError (exit 8) naming problems
    read_members(path, names=(), root_names=()) -> MemberContents   selected outer/root.tar files
    slim_copy(src, dst, keep)                 an archive of only the outer members named, one pass
    read_agent_conf(path, machine_id) -> str  root.tar var/lib/juju/agents/machine-N/agent.conf
    iter_bson_documents(stream) -> Iterator[bytes]          raw BSON documents of a dump file
    rewrite_archive(src, dst, *, transforms, root_transforms, late_transforms, only_replaced)
        -> RewriteResult   copy an archive in one pass replacing selected members, updating
                           manifest.json; or write only the replaced members (an overlay)
    safe_extract(tar, dest, state_files_only=False) -> list[str]   extract a tarfile refusing unsafe
                                              members (state_files_only: the root.tar allowlist)
    member_problem(...) -> str | None         the safety rules above, for one member
    state_file_problem(member) -> str | None  the root.tar allowlist, for one member
    build_manifest(files, *, tool_version, consistency, db_unavailable_seconds) -> dict
    manifest_entries_for_dir(top) -> list[ManifestEntry]    hash a staging juju-backup/ dir
    digest_file(path) -> ArchiveDigest        SHA-256, Juju SHA-1/base64 and size of a file
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jujubackup.archive.bsonstream import (
        BSON_POOL_INFLIGHT,
        BSON_POOL_MIN,
        bson_pool,
        check_bson_stream,
        iter_bson_blocks,
        iter_bson_documents,
    )
    from jujubackup.archive.extract import safe_extract
    from jujubackup.archive.hashing import (
        HASH_QUEUE,
        digest_file,
    )
    from jujubackup.archive.layout import (
        BSON_CODEC,
        CHUNK,
        DUMP_DIR,
        MANIFEST,
        MANIFEST_FORMAT_VERSION,
        MAX_BSON_DOC,
        MAX_SMALL_MEMBER,
        METADATA,
        ROOT_OVERLAY,
        ROOT_TAR,
        TOP,
        ArchiveDigest,
        Check,
        ManifestEntry,
        MemberContents,
        MemberInfo,
        RewriteResult,
        Transform,
        VerifyReport,
    )
    from jujubackup.archive.manifest import (
        build_manifest,
        compare_manifest,
        manifest_entries_for_dir,
        parse_manifest,
    )
    from jujubackup.archive.members import (
        ROOT_STATE_PATTERNS,
        is_state_path,
        link_target_problem,
        member_problem,
        normalize_name,
        path_problem,
        state_file_problem,
    )
    from jujubackup.archive.read import (
        agent_conf_path,
        read_agent_conf,
        read_members,
        read_members_stream,
        slim_copy,
    )
    from jujubackup.archive.rewrite import rewrite_archive
    from jujubackup.archive.verify import (
        STREAM_ERRORS,
        verify_archive,
        verify_stream,
    )

# Submodules load on first use of one of their names (PEP 562): a verb that only needs the layout
# constants or the manifest builder (download, create) does not pay for the verifier, the BSON reader
# and their imports (~0.1-0.2 CPU-s of a CLI run).
_SUBMODULE = {
    "ArchiveDigest": "layout",
    "BSON_CODEC": "layout",
    "BSON_POOL_INFLIGHT": "bsonstream",
    "BSON_POOL_MIN": "bsonstream",
    "CHUNK": "layout",
    "Check": "layout",
    "DUMP_DIR": "layout",
    "HASH_QUEUE": "hashing",
    "MANIFEST": "layout",
    "MANIFEST_FORMAT_VERSION": "layout",
    "MAX_BSON_DOC": "layout",
    "MAX_SMALL_MEMBER": "layout",
    "METADATA": "layout",
    "ManifestEntry": "layout",
    "MemberContents": "layout",
    "MemberInfo": "layout",
    "ROOT_OVERLAY": "layout",
    "ROOT_STATE_PATTERNS": "members",
    "ROOT_TAR": "layout",
    "RewriteResult": "layout",
    "STREAM_ERRORS": "verify",
    "TOP": "layout",
    "Transform": "layout",
    "VerifyReport": "layout",
    "agent_conf_path": "read",
    "bson_pool": "bsonstream",
    "build_manifest": "manifest",
    "check_bson_stream": "bsonstream",
    "compare_manifest": "manifest",
    "digest_file": "hashing",
    "is_state_path": "members",
    "iter_bson_blocks": "bsonstream",
    "iter_bson_documents": "bsonstream",
    "link_target_problem": "members",
    "manifest_entries_for_dir": "manifest",
    "member_problem": "members",
    "normalize_name": "members",
    "parse_manifest": "manifest",
    "path_problem": "members",
    "read_agent_conf": "read",
    "read_members": "read",
    "read_members_stream": "read",
    "rewrite_archive": "rewrite",
    "safe_extract": "extract",
    "slim_copy": "read",
    "state_file_problem": "members",
    "verify_archive": "verify",
    "verify_stream": "verify",
}


def __getattr__(name: str) -> Any:
    """Given a public name of the package, import its submodule and return it (cached in the package).
    Raise AttributeError for any other name."""
    module = _SUBMODULE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BSON_CODEC",
    "BSON_POOL_INFLIGHT",
    "BSON_POOL_MIN",
    "CHUNK",
    "DUMP_DIR",
    "HASH_QUEUE",
    "MANIFEST",
    "MANIFEST_FORMAT_VERSION",
    "MAX_BSON_DOC",
    "MAX_SMALL_MEMBER",
    "METADATA",
    "ROOT_OVERLAY",
    "ROOT_STATE_PATTERNS",
    "ROOT_TAR",
    "STREAM_ERRORS",
    "TOP",
    "ArchiveDigest",
    "Check",
    "ManifestEntry",
    "MemberContents",
    "MemberInfo",
    "RewriteResult",
    "Transform",
    "VerifyReport",
    "agent_conf_path",
    "bson_pool",
    "build_manifest",
    "check_bson_stream",
    "compare_manifest",
    "digest_file",
    "is_state_path",
    "iter_bson_blocks",
    "iter_bson_documents",
    "link_target_problem",
    "manifest_entries_for_dir",
    "member_problem",
    "normalize_name",
    "parse_manifest",
    "path_problem",
    "read_agent_conf",
    "read_members",
    "read_members_stream",
    "rewrite_archive",
    "safe_extract",
    "slim_copy",
    "state_file_problem",
    "verify_archive",
    "verify_stream",
]
