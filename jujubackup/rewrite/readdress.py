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
    state = _Readdressing(target, conf_name)
    result = archive.rewrite_archive(
        src,
        dst,
        transforms={f"{archive.DUMP_DIR}/{p}": state.collection(p) for p in DUMP_COLLECTIONS},
        root_transforms={conf_name: state.agent_conf},
        late_transforms={f"{archive.DUMP_DIR}/{OPLOG}": state.oplog,
                         f"{archive.DUMP_DIR}/{TXNS}": state.txns},
        compresslevel=compresslevel,
        tmp_dir=tmp_dir,
        only_replaced=overlay,
    )
    if not state.confs:
        Path(dst).unlink(missing_ok=True)
        raise VerifyError(f"root.tar of {src} has no {conf_name}", "is this the backup of another machine?")
    missing = tuple(p for p in DUMP_COLLECTIONS if p not in state.found)
    return ArchiveReaddress(
        result.digest,
        (*state.confs[0].changes, *state.dump_changes(), *state.txn_changes, *state.oplog_changes),
        state.confs[0].diff,
        missing,
    )


class _Readdressing:
    """The transforms readdress_archive hands to archive.rewrite_archive, and what they changed:
    the collections first (`found`, by dump path), agent.conf, then txns and the oplog (late: they
    follow the collections' changes)."""

    def __init__(self, target: ReaddressTarget, conf_name: str) -> None:
        self.target = target
        self.conf_name = conf_name
        self.found: dict[str, list[Change]] = {}
        self.confs: list[AgentConfRewrite] = []
        self.oplog_changes: list[Change] = []
        self.txn_changes: list[Change] = []

    def dump_changes(self) -> list[Change]:
        """Return the collections' changes so far, in DUMP_COLLECTIONS order."""
        return [c for p in DUMP_COLLECTIONS for c in self.found.get(p, [])]

    def collection(self, path: str) -> archive.Transform:
        """Return the transform of the dump file `path` (one collection)."""
        return lambda s, d: self.found.setdefault(path, []).extend(
            rewrite_collection_stream(s, d, path, self.target))

    def agent_conf(self, old: bytes) -> bytes:
        text = old.decode("utf-8")
        self.confs.append(rewrite_agent_conf(text, self.target.new_address, label=self.conf_name))
        return self.confs[-1].text.encode("utf-8")

    def oplog(self, s: IO[bytes], d: IO[bytes]) -> None:
        self.oplog_changes.extend(rewrite_oplog_stream(s, d, self.dump_changes(), self.target))

    def txns(self, s: IO[bytes], d: IO[bytes]) -> None:
        self.txn_changes.extend(rewrite_txns_stream(s, d, self.dump_changes()))
