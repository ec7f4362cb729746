"""What a re-addressing changes and reports: the dump paths it rewrites, the target, the changes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from jujubackup import archive

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


