"""Re-address a backup for a new host (issue 5 step 5). PURE: bytes and local streams in, bytes out.

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
wholesale. For every op on a document we rewrote: inserts and full replacements get the same
field values; for `$set`/`$unset`/... updates a key on a rewritten field (or inside it) is removed
(our value stays), a key holding a parent of a rewritten field gets the value set inside it; an
update left with no modifier is dropped. A `$v: 2` diff-format update (mongo 5+, not used by any
juju-db) touching a rewritten document is dropped. Ops on other documents pass byte for byte.
Documents that exist only in the oplog (inserted during the dump) are not rewritten. `applyOps`
command entries (mongo multi-document transactions, which Juju does not use) pass unchanged.

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
    rewrite_oplog_stream(src, dst, changes) -> list[Change]
    rewrite_txns_stream(src, dst, changes) -> list[Change]
    readdress_dump(files, target) -> DumpRewrite(files, changes)   all collection files at once
    readdress_archive(src, dst, target, *, tmp_dir, compresslevel, overlay) -> ArchiveReaddress
        one streaming pass over the archive: a re-addressed copy, or (overlay=True) a small
        archive of only the rewritten members, to unpack over the original (no recompression)
"""

from __future__ import annotations

import copy
import difflib
import io
import ipaddress
import os
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import bson

from jujubackup import archive
from jujubackup.errors import RefusedError, VerifyError

JOB_HOST_UNITS = 1
JOB_MANAGE_MODEL = 2
HARVEST_MODE_KEY = "provisioner-harvest-mode"
HARVEST_MODES = ("all", "none", "unknown", "destroyed")
HARVEST_DEFAULT = "destroyed"
"""juju/juju environs/config/config.go: the harvest modes and the default (HarvestDestroyed)."""

MACHINES = "juju/machines.bson"
INSTANCE_DATA = "juju/instanceData.bson"
CONTROLLERS = "juju/controllers.bson"
CONTROLLER_NODES = "juju/controllerNodes.bson"
SETTINGS = "juju/settings.bson"
OPLOG = "oplog.bson"
DUMP_COLLECTIONS: tuple[str, ...] = (MACHINES, INSTANCE_DATA, CONTROLLERS, CONTROLLER_NODES, SETTINGS)
"""Dump paths (relative to juju-backup/dump/) that readdress_dump rewrites; all others are untouched."""

SECRET_KEYS = re.compile(r"^(\S*(password|secret|key|identity)\S*):(.*)$")

Doc = dict[str, Any]


@dataclass(frozen=True)
class ReaddressTarget:
    """Where the restored controller machine goes: its machine id in the backup, the new host's
    address (IPv4/IPv6 literal or hostname), the new instance id, and the controller model UUID."""

    machine_id: str
    new_address: str
    new_instance_id: str
    controller_model_uuid: str


@dataclass(frozen=True)
class Change:
    """One rewritten value: collection ("juju.machines", "agent.conf", "oplog"), document id,
    dotted field path, old value, new value (None = removed)."""

    collection: str
    doc_id: Any
    field: str
    old: Any
    new: Any
    label: str = ""
    """What the document is to a person (a model's name for model settings), or ""."""

    def describe(self) -> str:
        """Return one human line: `juju.machines U:0 addresses: [10.0.0.1] -> [10.0.0.9]`."""
        named = f" (model {self.label})" if self.label else ""
        return (
            f"{self.collection} {self.doc_id}{named} {self.field}: {_short(self.old)} -> {_short(self.new)}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return plain data (JSON/YAML-friendly) for --format json/yaml."""
        data = {
            "collection": self.collection,
            "id": str(self.doc_id),
            "field": self.field,
            "old": _plain(self.old),
            "new": _plain(self.new),
        }
        if self.label:
            data["label"] = self.label
        return data


@dataclass(frozen=True)
class AgentConfRewrite:
    """The new agent.conf text, a unified diff of the (redacted) texts, and the changes."""

    text: str
    diff: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class DumpRewrite:
    """Rewritten collection files (dump-relative path -> bytes) and the changes made."""

    files: dict[str, bytes]
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class ArchiveReaddress:
    """Outcome of readdress_archive: the new archive's digests, every change, the agent.conf diff."""

    digest: archive.ArchiveDigest
    changes: tuple[Change, ...]
    agent_conf_diff: str
    missing: tuple[str, ...] = field(default=())


def _short(value: Any) -> str:
    """Return a compact text form of a value for one-line change descriptions."""
    plain = _plain(value)
    if isinstance(plain, list) and plain and all(isinstance(v, dict) and "value" in v for v in plain):
        return "[" + ", ".join(_addr_text(v) for v in plain) + "]"
    if isinstance(plain, list) and plain and all(isinstance(v, list) for v in plain):
        return "[" + ", ".join("[" + ", ".join(_addr_text(h) for h in srv) + "]" for srv in plain) + "]"
    if isinstance(plain, dict) and "value" in plain:
        return _addr_text(plain)
    return str(plain) if not isinstance(plain, str) else plain


def _addr_text(entry: Any) -> str:
    """Return `value` or `value:port` (`[v6]:port`) of an address/hostport subdocument."""
    if not isinstance(entry, dict):
        return str(entry)
    value = str(entry.get("value"))
    if "port" not in entry:
        return value
    return f"[{value}]:{entry['port']}" if ":" in value else f"{value}:{entry['port']}"


def _plain(value: Any) -> Any:
    """Return value with BSON-only types turned into JSON-friendly ones (for output)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# ---------------------------------------------------------------------------------------------
# agent.conf


def _format_hostport(host: str, port: str) -> str:
    """Return `host:port` as agent.conf writes it (IPv6 in brackets, quoted so YAML reads a string)."""
    if ":" in host:
        return f"'[{host}]:{port}'"
    return f"{host}:{port}"


def _split_hostport(entry: str) -> tuple[str, str]:
    """Given an agent.conf list entry (maybe quoted), return (host, port). Raise ValueError if no port."""
    value = entry.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{entry!r} is not host:port")
    return host.strip("[]"), port


def rewrite_agent_conf(text: str, new_address: str, *, label: str = "agent.conf") -> AgentConfRewrite:
    """Given agent.conf text and the new address, return the text with `apiaddresses` (and
    `stateaddresses` when present) reduced to one entry at the new address with the old first
    entry's port, every other byte unchanged, plus a unified diff (secrets redacted) and the changes.

    Raise RefusedError if there is no `apiaddresses` list or its entries have no port.
    """
    lines = text.splitlines(keepends=True)
    changes: list[Change] = []
    found = False
    for key in ("apiaddresses", "stateaddresses"):
        span = _find_list(lines, key)
        if span is None:
            continue
        found = found or key == "apiaddresses"
        start, end, old = span
        try:
            port = _split_hostport(old[0])[1]
        except (ValueError, IndexError) as err:
            raise RefusedError(
                f"{label}: cannot read the {key} entries {old!r}", "fix agent.conf by hand"
            ) from err
        new_entry = _format_hostport(new_address, port)
        lines[start:end] = _list_lines(lines[start:end], key, new_entry)
        changes.append(
            Change("agent.conf", label, key, [e.strip("'\"") for e in old], [new_entry.strip("'")])
        )
    if not found:
        raise RefusedError(f"{label} has no apiaddresses list", "is this a Juju machine agent.conf?")
    new_text = "".join(lines)
    return AgentConfRewrite(new_text, agent_conf_diff(text, new_text, label), tuple(changes))


def _find_list(lines: list[str], key: str) -> tuple[int, int, list[str]] | None:
    """Return (start, end, entries) of the top-level `key:` block list (start = the key line) or
    of an inline `key: [a, b]`; None if the key is absent."""
    for i, line in enumerate(lines):
        m = re.match(rf"^{key}:[ \t]*(.*?)\s*$", line)
        if not m:
            continue
        inline = m.group(1)
        if inline.startswith("["):
            return i, i + 1, [e.strip() for e in inline.strip("[]").split(",") if e.strip()]
        end = i + 1
        entries = []
        while end < len(lines) and (item := re.match(r"^\s*-\s+(.*?)\s*$", lines[end])):
            entries.append(item.group(1))
            end += 1
        return i, end, entries
    return None


def _list_lines(block: list[str], key: str, new_entry: str) -> list[str]:
    """Return the replacement lines for a list block: the key line kept, one entry line in the
    style (indent, line ending) of the first old entry."""
    head = block[0]
    eol = head[len(head.rstrip("\r\n")) :]
    if len(block) == 1:  # inline form
        return [f"{key}: [{new_entry}]{eol}"]
    first = block[1]
    indent = first[: len(first) - len(first.lstrip())]
    entry_eol = first[len(first.rstrip("\r\n")) :]
    return [head, f"{indent}- {new_entry}{entry_eol}"]


def redact_agent_conf(text: str) -> str:
    """Given agent.conf text, return it with secret values (keys naming a password, secret, key or
    identity, including their indented block lines) replaced by `<redacted>`; line count kept."""
    out = []
    in_block = False
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        eol = line[len(body) :]
        if in_block and (body.startswith((" ", "\t")) or not body):
            out.append(("  <redacted>" if body else "") + eol)
            continue
        in_block = False
        m = SECRET_KEYS.match(body)
        if m and not body.startswith((" ", "\t", "#")):
            in_block = m.group(3).strip() in ("|", "|-", "|+", ">", ">-")
            out.append(f"{m.group(1)}: <redacted>{eol}")
        else:
            out.append(line)
    return "".join(out)


def agent_conf_diff(old: str, new: str, label: str = "agent.conf") -> str:
    """Return a unified diff between two agent.conf texts with secrets redacted on both sides."""
    diff = difflib.unified_diff(
        redact_agent_conf(old).splitlines(keepends=True),
        redact_agent_conf(new).splitlines(keepends=True),
        fromfile=f"a/{label}",
        tofile=f"b/{label}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in diff)


# ---------------------------------------------------------------------------------------------
# field helpers


def _addresstype(address: str) -> str:
    """Return Juju's addresstype for an address: ipv4, ipv6 or hostname."""
    try:
        return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"
    except ValueError:
        return "hostname"


def _is_local(entry: Any) -> bool:
    """Return True for a loopback / machine-local address entry (kept as it is)."""
    if not isinstance(entry, dict):
        return False
    if entry.get("networkscope") == "local-machine":
        return True
    try:
        return ipaddress.ip_address(str(entry.get("value", ""))).is_loopback
    except ValueError:
        return False


def _new_entry(template: Mapping[str, Any] | None, address: str, defaults: Mapping[str, Any]) -> Doc:
    """Return a copy of an address/hostport subdocument (or `defaults`) pointing at `address`."""
    entry: Doc = copy.deepcopy(dict(template)) if template else dict(defaults)
    entry["value"] = address
    entry["addresstype"] = _addresstype(address)
    return entry


def readdress_list(entries: list[Any] | None, address: str, origin: str) -> list[Any]:
    """Given an `addresses`/`machineaddresses` list, return it with the loopback entries kept in
    place and every other entry replaced by a single entry for `address` (a copy of the first one)."""
    entries = list(entries or [])
    others = [e for e in entries if not _is_local(e)]
    defaults = {"networkscope": "local-cloud", "origin": origin}
    new = _new_entry(others[0] if others else None, address, defaults)
    out: list[Any] = []
    placed = False
    for e in entries:
        if _is_local(e):
            out.append(e)
        elif not placed:
            out.append(new)
            placed = True
    return out if placed else [new, *out]


def _set(doc: Doc, path: str, new: Any, changes: list[Change], collection: str) -> None:
    """Set dotted `path` in doc to `new` (creating subdocuments) and record a Change if it differs."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    old = node.get(last)
    if last in node and old == new and type(old) is type(new):
        return
    node[last] = new
    changes.append(Change(collection, doc.get("_id"), path, old, new))


def _set_present(doc: Doc, key: str, new: Any, changes: list[Change], collection: str) -> None:
    """Set a top-level key only if the document already has it."""
    if key in doc:
        _set(doc, key, new, changes, collection)


# ---------------------------------------------------------------------------------------------
# per-collection document rules


def _machine_key(doc: Mapping[str, Any]) -> tuple[str, str]:
    """Return (model uuid, machine id) of a machines/instanceData document (1.x and 2.x layouts)."""
    doc_id = str(doc.get("_id", ""))
    owner = str(doc.get("model-uuid", doc.get("env-uuid", "")))
    mid = str(doc.get("machineid", doc_id.rpartition(":")[2]))
    if not owner and ":" in doc_id:
        owner = doc_id.rpartition(":")[0]
    return owner, mid


def _in_model(doc: Mapping[str, Any], target: ReaddressTarget) -> bool:
    owner, _ = _machine_key(doc)
    return not owner or owner == target.controller_model_uuid


def machine_id_of(doc: Mapping[str, Any]) -> str:
    """Return the machine id of a juju.machines document (1.x and 2.x+ layouts)."""
    return _machine_key(doc)[1]


def is_controller_machine(doc: Mapping[str, Any], controller_model_uuid: str) -> bool:
    """THE rule for which machines are controllers (plan.py and this module both use it): a
    juju.machines document of the controller model (or of no model: 1.x) whose `jobs` hold
    JobManageModel (2) - Juju's Machine.IsManager (state/machine.go)."""
    owner, _ = _machine_key(doc)
    if owner and controller_model_uuid and owner != controller_model_uuid:
        return False
    jobs = doc.get("jobs")
    return isinstance(jobs, list) and JOB_MANAGE_MODEL in jobs


def rewrite_machine(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.machines document in place: re-address the restored machine, demote the
    other controller machines of the controller model, leave every other machine alone."""
    coll = "juju.machines"
    if not _in_model(doc, target):
        return
    if _machine_key(doc)[1] == target.machine_id:
        a = target.new_address
        _set(doc, "addresses", readdress_list(doc.get("addresses"), a, "provider"), changes, coll)
        _set(
            doc, "machineaddresses", readdress_list(doc.get("machineaddresses"), a, "machine"), changes, coll
        )
        for key in ("preferredpublicaddress", "preferredprivateaddress"):
            template = doc.get(key) if isinstance(doc.get(key), dict) and doc.get(key) else None
            new = _new_entry(template, a, {"networkscope": "local-cloud", "origin": "provider"})
            _set(doc, key, new, changes, coll)
        _set_present(doc, "instanceid", target.new_instance_id, changes, coll)
        _set_present(doc, "hasvote", True, changes, coll)
        _set_present(doc, "wantsvote", True, changes, coll)
    elif is_controller_machine(doc, target.controller_model_uuid):
        jobs = [j for j in doc["jobs"] if j != JOB_MANAGE_MODEL] or [JOB_HOST_UNITS]
        _set(doc, "jobs", jobs, changes, coll)
        _set_present(doc, "hasvote", False, changes, coll)
        _set_present(doc, "wantsvote", False, changes, coll)


def rewrite_instance_data(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.instanceData document: the restored machine's `instanceid`."""
    if _in_model(doc, target) and _machine_key(doc)[1] == target.machine_id:
        _set(doc, "instanceid", target.new_instance_id, changes, "juju.instanceData")


def _hostport_template(servers: Any) -> Doc | None:
    """Return the first non-loopback hostport of an `apihostports` list (else the first one)."""
    flat = [hp for srv in (servers or []) if isinstance(srv, list) for hp in srv if isinstance(hp, dict)]
    for hp in flat:
        if not _is_local(hp):
            return hp
    return flat[0] if flat else None


def rewrite_controllers(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.controllers document: controller ids -> [M]; API host ports -> [[A:port]]."""
    coll = "juju.controllers"
    doc_id = doc.get("_id")
    if doc_id == "e":
        for key in ("controller-ids", "machineids", "votingmachineids"):
            _set_present(doc, key, [target.machine_id], changes, coll)
    elif doc_id in ("apiHostPorts", "apiHostPortsForAgents"):
        template = _hostport_template(doc.get("apihostports"))
        defaults = {"networkscope": "local-cloud", "port": 17070}
        _set(doc, "apihostports", [[_new_entry(template, target.new_address, defaults)]], changes, coll)


REMOVED = "<document>"
"""Change.field of a document the rewrite removes (Change.new is None)."""


def rewrite_controller_node(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.controllerNodes document: the restored node has and wants a vote; any
    other node's document is removed (emptied: the stream drops it)."""
    doc_id = str(doc.get("_id", ""))
    if doc_id in (target.machine_id, f"{target.controller_model_uuid}:{target.machine_id}"):
        for key in ("has-vote", "wants-vote"):
            _set(doc, key, True, changes, "juju.controllerNodes")
        return
    changes.append(Change("juju.controllerNodes", doc.get("_id"), REMOVED, "controller node", None))
    doc.clear()


def rewrite_settings(doc: Doc, target: ReaddressTarget, changes: list[Change]) -> None:
    """Rewrite one juju.settings document: in a model's config (`_id` "<model uuid>:e"),
    provisioner-harvest-mode "none"; the Change names the model and keeps the earlier value."""
    doc_id = str(doc.get("_id", ""))
    owner = str(doc.get("model-uuid") or doc_id.rpartition(":")[0])
    config = doc.get("settings")
    if not owner or doc_id != f"{owner}:e" or not isinstance(config, dict):
        return
    before = len(changes)
    _set(doc, f"settings.{HARVEST_MODE_KEY}", "none", changes, "juju.settings")
    if len(changes) > before:
        name = config.get("name")
        changes[-1] = replace(changes[-1], label=name if isinstance(name, str) else "")


def harvest_changes(changes: Iterable[Change]) -> list[Change]:
    """Given rewrite changes, return those that turned a model's harvest mode to "none"."""
    return [
        c for c in changes if c.collection == "juju.settings" and c.field == f"settings.{HARVEST_MODE_KEY}"
    ]


DocRule = Callable[[Doc, ReaddressTarget, list[Change]], None]
RULES: dict[str, DocRule] = {
    MACHINES: rewrite_machine,
    INSTANCE_DATA: rewrite_instance_data,
    CONTROLLERS: rewrite_controllers,
    CONTROLLER_NODES: rewrite_controller_node,
    SETTINGS: rewrite_settings,
}


# ---------------------------------------------------------------------------------------------
# streams


def rewrite_collection_stream(
    src: IO[bytes], dst: IO[bytes], path: str, target: ReaddressTarget
) -> list[Change]:
    """Given a dump collection file `path` (one of DUMP_COLLECTIONS, relative to dump/), copy it
    from src to dst document by document applying its rule; unchanged documents are copied byte for
    byte. Return the changes. Raise ValueError for an unknown path, VerifyError for malformed BSON."""
    rule = RULES.get(path)
    if rule is None:
        raise ValueError(f"no re-addressing rule for dump/{path}")
    changes: list[Change] = []
    for raw in _documents(src, path):
        doc = bson.decode(raw, archive.BSON_CODEC)
        before = len(changes)
        rule(doc, target, changes)
        if not doc:
            continue  # removed
        dst.write(bson.encode(doc) if len(changes) > before else raw)
    return changes


def rewrite_collection(data: bytes, path: str, target: ReaddressTarget) -> tuple[bytes, list[Change]]:
    """Bytes form of rewrite_collection_stream: return (new file bytes, changes)."""
    out = io.BytesIO()
    changes = rewrite_collection_stream(io.BytesIO(data), out, path, target)
    return out.getvalue(), changes


def _documents(src: IO[bytes], path: str) -> Iterable[bytes]:
    """Yield raw documents of a dump file; raise VerifyError naming the file if malformed."""
    try:
        yield from archive.iter_bson_documents(src)
    except ValueError as err:
        raise VerifyError(f"dump/{path} is not well-formed BSON: {err}") from err


def readdress_dump(files: Mapping[str, bytes], target: ReaddressTarget) -> DumpRewrite:
    """Given the contents of the dump collection files present (paths relative to dump/, any of
    DUMP_COLLECTIONS), return the rewritten files that changed and every change (in file order)."""
    out: dict[str, bytes] = {}
    changes: list[Change] = []
    for path in DUMP_COLLECTIONS:
        if path not in files:
            continue
        data, file_changes = rewrite_collection(files[path], path, target)
        if file_changes:
            out[path] = data
            changes.extend(file_changes)
    return DumpRewrite(out, tuple(changes))


# ---------------------------------------------------------------------------------------------
# oplog


def _id_key(doc_id: Any) -> bytes:
    """Return a hashable, type-exact key for a document _id."""
    return bson.encode({"_id": doc_id})


def _targets(changes: Iterable[Change]) -> dict[tuple[str, bytes], dict[str, Any]]:
    """Group changes of dump collections by (namespace, _id) -> {path: new value}."""
    out: dict[tuple[str, bytes], dict[str, Any]] = {}
    for c in changes:
        if c.collection.count(".") >= 1 and c.collection not in ("agent.conf", "oplog"):
            out.setdefault((c.collection, _id_key(c.doc_id)), {})[c.field] = c.new
    return out


def rewrite_oplog_stream(src: IO[bytes], dst: IO[bytes], changes: Iterable[Change]) -> list[Change]:
    """Given dump/oplog.bson and the changes made to the collection files, copy the oplog so that
    replaying it cannot undo them (see the module docstring); return what was changed in the oplog
    (collection "oplog", doc_id "<ns> <_id>", field "op #<n> <what>", n counting from 0)."""
    targets = _targets(changes)
    namespaces = {ns for ns, _ in targets}
    out: list[Change] = []
    for n, raw in enumerate(_documents(src, OPLOG)):
        op = bson.decode(raw, archive.BSON_CODEC) if namespaces else None
        if op is None or op.get("ns") not in namespaces:
            dst.write(raw)
            continue
        before = len(out)
        keep = _rewrite_op(op, targets, n, out)
        if keep:
            dst.write(bson.encode(op) if len(out) > before else raw)
    return out


def _rewrite_op(
    op: Doc, targets: Mapping[tuple[str, bytes], dict[str, Any]], n: int, out: list[Change]
) -> bool:
    """Edit one oplog entry in place so it cannot undo a rewrite; record changes in `out`.
    Return False if the entry must be dropped."""
    kind = op.get("op")
    body = op.get("o")
    if kind not in ("i", "u") or not isinstance(body, dict):
        return True
    doc_id = (op.get("o2") or {}).get("_id") if kind == "u" else body.get("_id")
    paths = targets.get((op["ns"], _id_key(doc_id)))
    if not paths:
        return True
    where = f"{op['ns']} {doc_id}"
    if REMOVED in paths:
        out.append(Change("oplog", where, f"op #{n} on a removed document", "kept", "dropped"))
        return False
    if kind == "i" or not any(k.startswith("$") for k in body):
        for path, value in paths.items():
            _set_path(body, path, value)
        what = "insert" if kind == "i" else "replacement"
        out.append(Change("oplog", where, f"op #{n} {what}", "old values", "rewritten values"))
        return True
    if body.get("$v") == 2 or "diff" in body:
        out.append(Change("oplog", where, f"op #{n} diff-format update", "kept", "dropped"))
        return False
    if _rewrite_modifiers(body, paths, where, f"op #{n}", out):
        return True
    out.append(Change("oplog", where, f"op #{n} update", "nothing left to apply", "dropped"))
    return False


def _rewrite_modifiers(
    body: Doc, paths: Mapping[str, Any], where: str, label: str, out: list[Change], coll: str = "oplog"
) -> bool:
    """Edit a `$set`-style update body in place: drop keys on (or inside) rewritten fields, set the
    rewritten values inside keys holding their parents; record Changes (`coll`, `where`, "<label>
    <modifier> <key>"). Return False if no modifier is left."""
    for modifier in [k for k in body if k.startswith("$") and k != "$v"]:
        spec = body[modifier]
        if not isinstance(spec, dict):
            continue
        for key in list(spec):
            for path, value in paths.items():
                if key == path or key.startswith(path + "."):
                    old = spec.pop(key)
                    out.append(Change(coll, where, f"{label} {modifier} {key}", _plain(old), "dropped"))
                    break
                if path.startswith(key + ".") and isinstance(spec[key], dict):
                    inner = path[len(key) + 1 :]
                    _set_path(spec[key], inner, value)
                    out.append(
                        Change(coll, where, f"{label} {modifier} {key}.{inner}", "replayed", _plain(value))
                    )
        if not spec:
            del body[modifier]
    return any(k.startswith("$") and k != "$v" for k in body)


TXNS = "juju/txns.bson"
PENDING_TXN_STATES = (1, 2, 4)
"""mgo/txn states whose ops a resumer may still apply: preparing, prepared, applying."""


def rewrite_txns_stream(src: IO[bytes], dst: IO[bytes], changes: Iterable[Change]) -> list[Change]:
    """Given dump/juju/txns.bson (mgo/txn transactions) and the changes made to the collection files,
    copy it so that a PENDING transaction (state preparing/prepared/applying, which Juju's txn
    resumer completes on start) cannot undo them: in its ops on a rewritten document, update keys on
    rewritten fields are removed (an update left empty stays as `{}`, so the transaction still
    completes) and inserts get the rewritten values. Applied/aborted transactions are never re-run
    and are copied as they are. Only documents whose raw bytes name a rewritten `_id` are decoded.
    Return the changes (collection "juju.txns", doc_id the txn id, field "op #<i> ...")."""
    targets = {(ns.split(".", 1)[1], key): paths for (ns, key), paths in _targets(changes).items()}
    needles = [_txn_needle(key) for _, key in targets]
    out: list[Change] = []
    for raw in _documents(src, TXNS):
        if not any(n is None or n in raw for n in needles):
            dst.write(raw)
            continue
        txn = bson.decode(raw, archive.BSON_CODEC)
        before = len(out)
        if txn.get("s") in PENDING_TXN_STATES:
            _rewrite_txn_ops(txn, targets, out)
        dst.write(bson.encode(txn) if len(out) > before else raw)
    return out


def _txn_needle(id_key: bytes) -> bytes | None:
    """Return the raw BSON element `d: <id>` an mgo/txn op carries for a string _id (a cheap filter),
    or None for other _id types (those documents are always decoded)."""
    doc_id = bson.decode(id_key)["_id"]
    if not isinstance(doc_id, str):
        return None
    value = doc_id.encode("utf-8")
    return b"\x02d\x00" + struct.pack("<i", len(value) + 1) + value + b"\x00"


def _rewrite_txn_ops(
    txn: Doc, targets: Mapping[tuple[str, bytes], dict[str, Any]], out: list[Change]
) -> None:
    """Edit the ops of one pending transaction in place; record changes."""
    for i, op in enumerate(txn.get("o") or []):
        if not isinstance(op, dict):
            continue
        paths = targets.get((str(op.get("c")), _id_key(op.get("d"))))
        if not paths:
            continue
        where, label = str(txn.get("_id")), f"op #{i} {op.get('c')} {op.get('d')}"
        if REMOVED in paths:
            for key in ("u", "i", "r"):
                op.pop(key, None)
            op["a"] = "d-"  # mgo/txn DocMissing: true, the document is gone
            out.append(Change("juju.txns", where, f"{label} on a removed document", "kept", "assert only"))
            continue
        if isinstance(op.get("u"), dict) and not _rewrite_modifiers(
            op["u"], paths, where, label, out, "juju.txns"
        ):
            op["u"] = {}
        if isinstance(op.get("i"), dict):
            for path, value in paths.items():
                _set_path(op["i"], path, value)
            out.append(Change("juju.txns", where, f"{label} insert", "old values", "rewritten values"))


def _set_path(doc: Doc, path: str, value: Any) -> None:
    """Set dotted `path` in doc to a copy of `value`, creating subdocuments."""
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------
# whole archive


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
