"""Re-address a backup for a new host (issue 5 step 5). PURE: bytes and local streams in, bytes out.

A package by concern (layout, agentconf, fields, documents, streams, oplog, readdress); every public
name is importable from `jujubackup.rewrite` as before.

What changes (reference juju-backups.md §5.4, §5.5), for the restored machine M of the controller
model U moving to address A with instance id I:

agent.conf (root.tar `var/lib/juju/agents/machine-M/agent.conf`)
    `apiaddresses` becomes the single entry `A:<port of the old first entry>`; `stateaddresses`
    (old formats) likewise with its own port. Every other byte (the `# format` header, comments,
    key order, line endings) is kept.

dump, db `juju` (one file per collection, streamed document by document; only these files are read)
    machines.bson         M (`_id` "U:M"): `addresses` and `machineaddresses` keep their loopback
                          (local-machine) entries and get A in place of every other entry;
                          `preferredpublicaddress`/`preferredprivateaddress` value A; `instanceid`
                          I (1.x docs); `hasvote`/`wantsvote` true where present.
                          Other controller machines of U (jobs contain 2) are demoted: `jobs`
                          without 2 (`[1]` if nothing is left), `hasvote`/`wantsvote` false where
                          present. Their addresses are left alone (they name the old hosts).
    instanceData.bson     M: `instanceid` I.
    controllers.bson      `e`: `controller-ids` (and 2.0-2.6 `machineids`, `votingmachineids`) ->
                          [M]; `apiHostPorts`, `apiHostPortsForAgents`: `apihostports` -> [[A:port]]
                          (the first non-loopback entry's other fields and port kept).
    controllerNodes.bson  M: `has-vote`/`wants-vote` true; every other node's document is REMOVED
                          (State.ControllerNodes() lists every document, and a later Juju
                          create-backup records HANodes = their count: juju/juju
                          state/enableha.go ControllerNodes, apiserver/facades/client/backups).
    settings.bson         every model's config (`<model uuid>:e`): `settings.provisioner-harvest-mode`
                          "none", so the restored provisioners never harvest (stop) instances they
                          do not know (juju/juju environs/config/config.go ProvisionerHarvestModeKey:
                          all/none/unknown/destroyed, default destroyed; 2.x/3.x have no 1.x
                          safe-mode key). Each Change carries the model's name (`label`) and the
                          earlier value (None: unset, i.e. Juju's default "destroyed").
    Fields are only written when the value changes; absent voting fields are not added.

dump/oplog.bson (replayed by `mongorestore --oplogReplay` AFTER the collections are loaded, so an
op touching a rewritten field would undo the rewrite). Decision: ops are REWRITTEN, not dropped
wholesale, by the same rules as the dump files. An insert or full replacement of a document of one of
the collections above goes through that collection's rule (so documents that exist only in the oplog,
written during an online dump, are re-addressed too; one the rule removes is dropped, and so are
later updates of it). For a `$set`/`$unset`/... update (`$v: 1`, as juju-db 4.4 writes) of a document
the rules changed, a key on a rewritten field (or inside it) is removed (our value stays), a key
holding a parent of one gets the value set inside it; then the rule runs over a probe document made
of the update's `$set`/`$unset` keys laid over the values the rules saw before they changed that
document (the dump's, or an earlier op's: so a `$set` of `hasvote` on a controller the dump's `jobs`
made one of is judged as the demoted controller's, though the 2.7+ dump document has no voting
field), and a key it would rewrite gets its value (so a harvest mode
set during the dump on a model whose dump already said "none", or a machine made a controller during
the dump, still come out right; an update of a document the rule removes is dropped). A `$v: 2`
diff (MongoDB 5.0+) loses its `u`/`i`/`d` fields and `s<field>` subdiffs on rewritten fields of the
dump's documents (no probe). An update left with nothing is dropped. `applyOps`
entries - MongoDB multi-document transactions on `admin.$cmd` (Juju 3.x writes every change as one:
juju/mgo sstxn), with `partialTxn`/`count`, `prepare` + `commitTransaction` forms, and plain or nested
applyOps commands - are rewritten op by op; the entry itself always stays (an emptied `applyOps`
array is applied as nothing by mongorestore), so a transaction's chain and commit stay whole. Ops on
other documents pass byte for byte. Not covered: other modifiers (`$push`, `$inc`, ...) are judged
only against the dump's changes, not probed.

dump/juju/txns.bson (mgo/txn transactions; Juju's txn resumer completes PENDING ones on start, and
such a transaction could re-apply an old address): in pending transactions (preparing, prepared,
applying) the ops on rewritten documents lose their update keys on rewritten fields (an update left
empty stays `{}` so the transaction still completes), inserts get the rewritten values. Applied and
aborted transactions are copied as they are; only documents naming a rewritten `_id` are decoded.

mongodump `--gzip` dumps (`*.bson.gz`) are not re-addressed (neither Juju nor jujubackup makes them).

Public API:
    ReaddressTarget(machine_id, new_address, new_instance_id, controller_model_uuid)
    Change(collection, doc_id, field, old, new)        one rewritten value; `.describe()` one line
    rewrite_agent_conf(text, new_address, *, label) -> AgentConfRewrite(text, diff, changes)
    redact_agent_conf(text) -> str                     secrets replaced, line count kept
    DUMP_COLLECTIONS                                   dump paths this module rewrites
    rewrite_collection_stream(src, dst, path, target) -> list[Change]
    rewrite_collection(data, path, target) -> (bytes, list[Change])
    rewrite_oplog_stream(src, dst, changes, target) -> list[Change]
    rewrite_txns_stream(src, dst, changes) -> list[Change]
    readdress_dump(files, target) -> DumpRewrite(files, changes)   all collection files at once
    readdress_archive(src, dst, target, *, tmp_dir, compresslevel, overlay) -> ArchiveReaddress
        one streaming pass over the archive: a re-addressed copy, or (overlay=True) a small
        archive of only the rewritten members, to unpack over the original (no recompression)
"""

from __future__ import annotations

from jujubackup.rewrite.agentconf import (
    agent_conf_diff,
    redact_agent_conf,
    rewrite_agent_conf,
)
from jujubackup.rewrite.documents import (
    REMOVED,
    RULES,
    DocRule,
    harvest_changes,
    is_controller_machine,
    machine_id_of,
    rewrite_controller_node,
    rewrite_controllers,
    rewrite_instance_data,
    rewrite_machine,
    rewrite_settings,
)
from jujubackup.rewrite.fields import readdress_list
from jujubackup.rewrite.layout import (
    CONTROLLER_NODES,
    CONTROLLERS,
    DUMP_COLLECTIONS,
    HARVEST_DEFAULT,
    HARVEST_MODE_KEY,
    HARVEST_MODES,
    INSTANCE_DATA,
    JOB_HOST_UNITS,
    JOB_MANAGE_MODEL,
    MACHINES,
    OPLOG,
    SECRET_KEYS,
    SETTINGS,
    AgentConfRewrite,
    ArchiveReaddress,
    Change,
    Doc,
    DumpRewrite,
    ReaddressTarget,
)
from jujubackup.rewrite.oplog import (
    PENDING_TXN_STATES,
    TXNS,
    rewrite_oplog_stream,
    rewrite_txns_stream,
)
from jujubackup.rewrite.readdress import readdress_archive
from jujubackup.rewrite.streams import (
    readdress_dump,
    rewrite_collection,
    rewrite_collection_stream,
)

__all__ = [
    "CONTROLLERS",
    "CONTROLLER_NODES",
    "DUMP_COLLECTIONS",
    "HARVEST_DEFAULT",
    "HARVEST_MODES",
    "HARVEST_MODE_KEY",
    "INSTANCE_DATA",
    "JOB_HOST_UNITS",
    "JOB_MANAGE_MODEL",
    "MACHINES",
    "OPLOG",
    "PENDING_TXN_STATES",
    "REMOVED",
    "RULES",
    "SECRET_KEYS",
    "SETTINGS",
    "TXNS",
    "AgentConfRewrite",
    "ArchiveReaddress",
    "Change",
    "Doc",
    "DocRule",
    "DumpRewrite",
    "ReaddressTarget",
    "agent_conf_diff",
    "harvest_changes",
    "is_controller_machine",
    "machine_id_of",
    "readdress_archive",
    "readdress_dump",
    "readdress_list",
    "redact_agent_conf",
    "rewrite_agent_conf",
    "rewrite_collection",
    "rewrite_collection_stream",
    "rewrite_controller_node",
    "rewrite_controllers",
    "rewrite_instance_data",
    "rewrite_machine",
    "rewrite_oplog_stream",
    "rewrite_settings",
    "rewrite_txns_stream",
]
