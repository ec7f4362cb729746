"""readdress_archive: a whole backup re-addressed in one pass (or only its changed members: an overlay)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from jujubackup import archive
from jujubackup.errors import VerifyError
from jujubackup.rewrite.agentconf import rewrite_agent_conf
from jujubackup.rewrite.layout import (
    DUMP_COLLECTIONS,
    OPLOG,
    AgentConfRewrite,
    ArchiveReaddress,
    Change,
    ReaddressTarget,
)
from jujubackup.rewrite.oplog import TXNS, rewrite_oplog_stream, rewrite_txns_stream
from jujubackup.rewrite.streams import rewrite_collection_stream


def readdress_archive(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    target: ReaddressTarget,
    *,
    tmp_dir: str | os.PathLike[str] | None = None,
    compresslevel: int = 1,
    overlay: bool = False,
) -> ArchiveReaddress:
    """Given a verified archive, write a re-addressed copy to `dst` (0600) in one streaming pass:
    agent.conf of the restored machine, the DUMP_COLLECTIONS files present, and oplog.bson (moved
    to the end of the archive: it is rewritten after the collections). Return the new digests,
    every change (agent.conf, then collections in DUMP_COLLECTIONS order, then oplog) and the
    agent.conf diff. `compresslevel` defaults to 1: the copy is transient, speed matters.

    With `overlay`, `dst` holds only what changed (no recompression of the big unchanged members):
    `juju-backup/dump/<rewritten files>` to unpack over the unpacked original archive, and
    `juju-backup/root-overlay.tar` (the rewritten agent.conf, original header) to extract onto `/`
    after root.tar. Unpacking the original archive and then the overlay gives the same files as
    unpacking the full re-addressed copy.
    Raise VerifyError if the archive is unreadable or has no agent.conf for the machine,
    RefusedError if agent.conf has no apiaddresses; `dst` is removed then.
    """
    conf_name = archive.agent_conf_path(target.machine_id)
    found: dict[str, list[Change]] = {}
    confs: list[AgentConfRewrite] = []
    oplog_changes: list[Change] = []
    txn_changes: list[Change] = []

    def collection(path: str) -> archive.Transform:
        return lambda s, d: found.setdefault(path, []).extend(rewrite_collection_stream(s, d, path, target))

    def agent_conf(old: bytes) -> bytes:
        confs.append(rewrite_agent_conf(old.decode("utf-8"), target.new_address, label=conf_name))
        return confs[-1].text.encode("utf-8")

    def oplog(s: IO[bytes], d: IO[bytes]) -> None:
        dump_changes = [c for p in DUMP_COLLECTIONS for c in found.get(p, [])]
        oplog_changes.extend(rewrite_oplog_stream(s, d, dump_changes))

    def txns(s: IO[bytes], d: IO[bytes]) -> None:
        dump_changes = [c for p in DUMP_COLLECTIONS for c in found.get(p, [])]
        txn_changes.extend(rewrite_txns_stream(s, d, dump_changes))

    result = archive.rewrite_archive(
        src,
        dst,
        transforms={f"{archive.DUMP_DIR}/{p}": collection(p) for p in DUMP_COLLECTIONS},
        root_transforms={conf_name: agent_conf},
        late_transforms={f"{archive.DUMP_DIR}/{OPLOG}": oplog, f"{archive.DUMP_DIR}/{TXNS}": txns},
        compresslevel=compresslevel,
        tmp_dir=tmp_dir,
        only_replaced=overlay,
    )
    if not confs:
        Path(dst).unlink(missing_ok=True)
        raise VerifyError(f"root.tar of {src} has no {conf_name}", "is this the backup of another machine?")
    dump_changes = [c for p in DUMP_COLLECTIONS for c in found.get(p, [])]
    missing = tuple(p for p in DUMP_COLLECTIONS if p not in found)
    return ArchiveReaddress(
        result.digest,
        (*confs[0].changes, *dump_changes, *txn_changes, *oplog_changes),
        confs[0].diff,
        missing,
    )
