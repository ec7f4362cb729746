"""Juju-compatible backup metadata (PURE: no I/O).

Reads the `juju-backup/metadata.json` of every Juju era we support and writes FormatVersion 1.

- FormatVersion 0 (Juju ≤ 2.8 betas): no `FormatVersion` key, `Environment` instead of `ModelUUID`,
  no `HANodes` (derive it with :func:`derive_ha_nodes`, as juju-restore does).
- FormatVersion 1 (Juju 2.8+): the keys of :data:`V1_KEYS`.
- FormatVersion > 1 is refused with a :class:`VerifyError`.

Public API:
    BackupMetadata                      typed metadata; `from_json_dict`, `to_juju_dict`, `to_api_dict`
    parse_metadata_json(text) -> BackupMetadata
    derive_ha_nodes(controller_node_count, controller_machine_counts, model_uuid) -> int
    make_backup_id(started, model_uuid) -> "YYYYMMDD-hhmmss.<uuid>"
    validate_backup_id(id) -> id        refuse anything but `YYYYMMDD-hhmmss.<uuid>` (VerifyError)
    is_uuid(text) / identity_problems(md) -> list[str]   UUID checks of ID/ModelUUID/ControllerUUID,
                                        Juju machine id checks of Machine/ControllerMachineID
    is_machine_id(text) / is_machine_tag_suffix(text)     Juju's names.IsValidMachine, and its tag form
    restore_machine_id(md) -> str       the backed-up machine id restore writes into unit names
    archive_name(started) -> "juju-backup-YYYYMMDD-HHMMSS.tar.gz"
    resolve_id(ids, query) -> id        unique prefix or "latest"
    format_time / parse_time            RFC3339 UTC, Go zero time <-> None

IDs and UUIDs from an archive are untrusted: they end up in remote paths (`<dir>/<ID>.tar.gz`).
A backup ID must match `YYYYMMDD-hhmmss.<uuid>` exactly (lowercase hex UUID 8-4-4-4-12, no `/`,
`..`, whitespace or newline); verification fails (exit 8) for metadata whose non-empty ID,
ModelUUID or ControllerUUID is not of that form (see :func:`identity_problems`). The machine id
(Machine, ControllerMachineID) becomes unit names (`jujud-machine-N`), paths and mongo JS on a restore
target: it must be a Juju machine id (names.IsValidMachine), and restore takes only a top-level one.

Every value is typed as Juju's Go struct types it (state/backups metadata: strings, int64 Size and
HANodes, RFC3339 times): a number where a string belongs, `Size: 1e999`, a time outside years
1..9999 or JSON nested past MAX_JSON_DEPTH is a VerifyError (exit 8) naming the key, never an
internal error.

Secrets: v0 archives carry `CAPrivateKey`; it is never kept, written or shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from jujubackup.errors import NotFoundError, RefusedError, VerifyError

CURRENT_FORMAT_VERSION = 1
CHECKSUM_FORMAT = "SHA-1, base64 encoded"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
ID_TIME_FORMAT = "%Y%m%d-%H%M%S"

V1_KEYS: tuple[str, ...] = (
    "ID",
    "FormatVersion",
    "Checksum",
    "ChecksumFormat",
    "Size",
    "Stored",
    "Started",
    "Finished",
    "Notes",
    "ModelUUID",
    "Machine",
    "Hostname",
    "Version",
    "Series",
    "ControllerUUID",
    "HANodes",
    "ControllerMachineID",
    "ControllerMachineInstanceID",
)

_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)
_ID_RE = re.compile(r"^\d{8}-\d{6}\.")
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_UUID_RE = re.compile(_UUID)
_BACKUP_ID_RE = re.compile(r"\d{8}-\d{6}\." + _UUID)
# juju/names machine.go (v4+: IsValidMachine; older: IsMachine): NumberSnippet "(0|[1-9][0-9]*)",
# ContainerSnippet "/[a-z]+/" NumberSnippet, MachineSnippet = Number Container*; Go's `$` is the
# end of the text (fullmatch here: Python's `$` would let a trailing newline through).
_NUMBER = r"(?:0|[1-9][0-9]*)"
_MACHINE_ID_RE = re.compile(_NUMBER + r"(?:/[a-z]+/" + _NUMBER + r")*", re.ASCII)
_MACHINE_TAG_SUFFIX_RE = re.compile(_NUMBER + r"(?:-[a-z]+-" + _NUMBER + r")*", re.ASCII)
"""names.MachineTag: "machine-" + the id with "/" -> "-" (agent dirs are named by tag)."""
MAX_INT64 = 2**63 - 1
MAX_JSON_DEPTH = 64
"""Juju's metadata and our manifest are at most 3 levels deep; deeper JSON is refused before
Python's recursion limit turns it into an internal error."""


def parse_time(value: Any) -> datetime | None:
    """Given an RFC3339 string (any fraction length, Z or offset), return an aware UTC datetime.

    Return None for the Go zero time, an empty string or None. Raise VerifyError if unparsable.
    Fractions beyond microseconds (Go writes nanoseconds) are truncated.
    """
    if value is None or value == "" or value == GO_ZERO_TIME:
        return None
    m = _RFC3339.fullmatch(str(value))
    if not m:
        raise VerifyError(f"archive metadata has an unreadable time {value!r}", "expected RFC3339")
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    tz = "+00:00" if m.group("tz") == "Z" else m.group("tz")
    try:
        parsed = datetime.fromisoformat(f"{m.group('base')}.{frac}{tz}")
        if parsed.year <= 1:
            return None
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as err:  # month 13, year 0, 9999-12-31 at -23:59 …
        raise VerifyError(f"archive metadata time {value!r} is out of range ({err})") from err


def format_time(value: datetime | None) -> str:
    """Given a datetime (naive = UTC) or None, return RFC3339 UTC text; None -> the Go zero time."""
    if value is None:
        return GO_ZERO_TIME
    utc = _as_utc(value)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _as_utc(value: datetime) -> datetime:
    """Return `value` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class BackupMetadata:
    """Juju backup metadata, independent of the format version it was read from.

    `format_version` is the version read (0 or 1); `to_juju_dict` always writes version 1.
    `ha_nodes` is None when a v0 archive was read and it has not been derived yet.
    """

    id: str = ""
    format_version: int = CURRENT_FORMAT_VERSION
    checksum: str = ""
    checksum_format: str = ""
    size: int = 0
    stored: datetime | None = None
    started: datetime | None = None
    finished: datetime | None = None
    notes: str = ""
    model_uuid: str = ""
    machine: str = ""
    hostname: str = ""
    version: str = ""
    series: str = ""
    base: str = ""
    controller_uuid: str = ""
    ha_nodes: int | None = None
    controller_machine_id: str = ""
    controller_machine_instance_id: str = ""
    ca_cert: str = field(default="", repr=False)

    @classmethod
    def from_json_dict(cls, doc: Mapping[str, Any]) -> BackupMetadata:
        """Given a decoded metadata.json object (v0 or v1), return BackupMetadata.

        Raise VerifyError if FormatVersion is newer than 1, not an integer, or a field has a bad type.
        """
        version = _format_version(doc)
        try:
            return cls(
                id=_str(doc, "ID"),
                format_version=version,
                checksum=_str(doc, "Checksum"),
                checksum_format=_str(doc, "ChecksumFormat"),
                size=_int(doc, "Size"),
                stored=_time(doc, "Stored"),
                started=_time(doc, "Started"),
                finished=_time(doc, "Finished"),
                notes=_str(doc, "Notes"),
                model_uuid=_str(doc, "ModelUUID") or _str(doc, "Environment"),
                machine=_str(doc, "Machine"),
                hostname=_str(doc, "Hostname"),
                version=_str(doc, "Version"),
                series=_str(doc, "Series"),
                base=_str(doc, "Base"),
                controller_uuid=_str(doc, "ControllerUUID"),
                ha_nodes=_int(doc, "HANodes") if version >= 1 and "HANodes" in doc else None,
                controller_machine_id=_str(doc, "ControllerMachineID"),
                controller_machine_instance_id=_str(doc, "ControllerMachineInstanceID"),
                ca_cert=_str(doc, "CACert"),
            )
        except (TypeError, ValueError) as err:
            raise VerifyError(f"archive metadata has a field of the wrong type: {err}") from err

    def to_juju_dict(self) -> dict[str, Any]:
        """Return the FormatVersion 1 metadata.json object: every key of V1_KEYS, in Juju's order.

        Unset times are written as the Go zero time; unknown HANodes as 0. `Base` is added when set.
        """
        out: dict[str, Any] = {
            "ID": self.id,
            "FormatVersion": CURRENT_FORMAT_VERSION,
            "Checksum": self.checksum,
            "ChecksumFormat": self.checksum_format,
            "Size": self.size,
            "Stored": format_time(self.stored),
            "Started": format_time(self.started),
            "Finished": format_time(self.finished),
            "Notes": self.notes,
            "ModelUUID": self.model_uuid,
            "Machine": self.machine,
            "Hostname": self.hostname,
            "Version": self.version,
            "Series": self.series,
            "ControllerUUID": self.controller_uuid,
            "HANodes": self.ha_nodes or 0,
            "ControllerMachineID": self.controller_machine_id,
            "ControllerMachineInstanceID": self.controller_machine_instance_id,
        }
        if self.base:
            out["Base"] = self.base
        return out

    def to_api_dict(self) -> dict[str, Any]:
        """Return the kebab-case view of `juju show-backup` (no CA key), for json/yaml output."""
        return {
            "id": self.id,
            "format-version": self.format_version,
            "checksum": self.checksum,
            "checksum-format": self.checksum_format,
            "size": self.size,
            "stored": format_time(self.stored),
            "started": format_time(self.started),
            "finished": format_time(self.finished),
            "notes": self.notes,
            "model": self.model_uuid,
            "machine": self.machine,
            "hostname": self.hostname,
            "version": self.version,
            "series": self.series or self.base,
            "controller-uuid": self.controller_uuid,
            "controller-machine-id": self.controller_machine_id,
            "controller-machine-inst-id": self.controller_machine_instance_id,
            "ha-nodes": self.ha_nodes,
        }

    def with_storage(
        self, *, checksum: str, size: int, stored: datetime, backup_id: str = ""
    ) -> BackupMetadata:
        """Return a copy completed as Juju's catalog does when storing: checksum, size, stored time, ID.

        The ID defaults to `make_backup_id(started, model_uuid)`.
        """
        started = self.started or stored
        return replace(
            self,
            id=backup_id or make_backup_id(started, self.model_uuid),
            checksum=checksum,
            checksum_format=CHECKSUM_FORMAT,
            size=size,
            stored=_as_utc(stored),
        )


def _format_version(doc: Mapping[str, Any]) -> int:
    """Return FormatVersion of `doc` (0 when absent). Raise VerifyError if unknown or newer than 1."""
    raw = doc.get("FormatVersion", 0)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise VerifyError(f"archive metadata FormatVersion {raw!r} is not a version number")
    if raw > CURRENT_FORMAT_VERSION:
        raise VerifyError(
            f"archive metadata FormatVersion {raw} is newer than this jujubackup understands",
            f"this jujubackup reads FormatVersion 0 and 1; upgrade jujubackup to read version {raw}",
        )
    return raw


_BAD_FIELD = "archive metadata has an unreadable field"
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
               dict: "an object"}


def _str(doc: Mapping[str, Any], key: str) -> str:
    """Return doc[key] ('' when absent or null). Raise VerifyError for anything but a string (Juju's
    Go struct holds a string there: it would refuse a number too)."""
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise VerifyError(f"{_BAD_FIELD}: {key} is {_JSON_TYPES.get(type(value), 'not')}, not a string")
    return value


def _int(doc: Mapping[str, Any], key: str) -> int:
    """Return doc[key] (0 when absent or null). Raise VerifyError unless it is a JSON integer in
    0..2^63-1 (Juju's int64; 1e999 decodes to inf, "big" is a string)."""
    value = doc.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT64:
        noun = "a size in bytes" if key == "Size" else "a count"
        raise VerifyError(f"{_BAD_FIELD}: {key} {value!r} is not {noun} (an integer in 0..2^63-1)")
    return value


def _time(doc: Mapping[str, Any], key: str) -> datetime | None:
    """Return doc[key] parsed by parse_time (None when absent, null or the Go zero time). Raise
    VerifyError naming the key for a non-string or a time that is unreadable or out of range."""
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise VerifyError(f"{_BAD_FIELD}: {key} {value!r} is not a string (an RFC3339 time)")
    try:
        return parse_time(value)
    except VerifyError as err:
        raise VerifyError(f"{_BAD_FIELD}: {key} {value!r} is an unreadable time (RFC3339 in years "
                          "1..9999)", "expected an RFC3339 time in years 1..9999") from err


def load_json(text: str | bytes, label: str) -> Any:
    """Given JSON text from an archive, return the decoded value. Raise VerifyError (exit 8) if it is
    not JSON, not UTF-8, or nested deeper than MAX_JSON_DEPTH (checked before decoding: deep nesting
    would exhaust Python's recursion limit)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _json_depth(raw) > MAX_JSON_DEPTH:
        raise VerifyError(f"{label} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise VerifyError(f"{label} is not valid JSON: {err}") from err


_BRACKETS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"', re.DOTALL)


def _json_depth(raw: bytes) -> int:
    """Return the deepest nesting of [ and { in JSON text (strings skipped); malformed text gives
    some number and is refused by the decoder afterwards."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(raw):
        c = m.group()[:1]
        if c in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif c in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_metadata_json(text: str | bytes) -> BackupMetadata:
    """Given metadata.json text, return BackupMetadata. Raise VerifyError if not a JSON object (or
    nested too deeply), or if a value has the wrong type or is out of range."""
    doc = load_json(text, "archive metadata.json")
    if not isinstance(doc, dict):
        raise VerifyError("archive metadata.json is not a JSON object")
    return BackupMetadata.from_json_dict(doc)


def is_controller_machine(doc: Mapping[str, Any], model_uuid: str = "") -> bool:
    """Given a juju.machines document, return True if it has JobManageModel (2) and, when
    `model_uuid` is given, belongs to that model (`model-uuid`, or `env-uuid` in 1.x dumps)."""
    jobs = doc.get("jobs") or []
    if 2 not in jobs:
        return False
    owner = doc.get("model-uuid", doc.get("env-uuid", ""))
    return not model_uuid or not owner or owner == model_uuid


def count_controller_machines(machines: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Given juju.machines documents, return {model uuid: number of machines with job 2}."""
    counts: dict[str, int] = {}
    for doc in machines:
        if is_controller_machine(doc):
            owner = str(doc.get("model-uuid", doc.get("env-uuid", "")))
            counts[owner] = counts.get(owner, 0) + 1
    return counts


def derive_ha_nodes(
    controller_node_count: int | None, controller_machine_counts: Mapping[str, int], model_uuid: str
) -> int:
    """Derive HANodes for a v0 archive, as juju-restore does.

    Given the number of docs in dump/juju/controllerNodes.bson (None when the file is absent or empty)
    and the per-model counts of controller machines from dump/juju/machines.bson, return the
    controllerNodes count if positive, else the controller machines of `model_uuid` (docs without a
    model uuid are counted under ""), else 0.
    """
    if controller_node_count:
        return controller_node_count
    return controller_machine_counts.get(model_uuid, 0) + controller_machine_counts.get("", 0)


def make_backup_id(started: datetime, model_uuid: str) -> str:
    """Given the backup's start time (naive = UTC) and the controller model UUID, return the Juju
    storage ID `YYYYMMDD-hhmmss.<uuid>` (time in UTC)."""
    return f"{_as_utc(started).strftime(ID_TIME_FORMAT)}.{model_uuid}"


def is_uuid(text: str) -> bool:
    """Return True if `text` is exactly a lowercase UUID (8-4-4-4-12 hex), as Juju writes them."""
    return _UUID_RE.fullmatch(text) is not None


def is_backup_id(text: str) -> bool:
    """Return True if `text` is exactly a backup ID `YYYYMMDD-hhmmss.<uuid>`."""
    return _BACKUP_ID_RE.fullmatch(text) is not None


def validate_backup_id(backup_id: str) -> str:
    """Given a backup ID from an archive, sidecar or record, return it unchanged if it is exactly
    `YYYYMMDD-hhmmss.<uuid>` (safe in a remote path). Raise VerifyError (exit 8) otherwise."""
    if not is_backup_id(backup_id):
        raise VerifyError(
            f"backup ID {backup_id!r} is not of the form YYYYMMDD-hhmmss.<uuid>",
            "the archive's metadata (or its .json sidecar) names an invalid ID; it is damaged or forged",
        )
    return backup_id


def identity_problems(md: BackupMetadata) -> list[str]:
    """Given metadata, return one message per identity field that is set but malformed: ID not
    `YYYYMMDD-hhmmss.<uuid>`, ModelUUID or ControllerUUID not a UUID. Empty fields are not problems."""
    problems = []
    if md.id and not is_backup_id(md.id):
        problems.append(f"metadata ID {md.id!r} is not of the form YYYYMMDD-hhmmss.<uuid>")
    for label, value in (("ModelUUID", md.model_uuid), ("ControllerUUID", md.controller_uuid)):
        if value and not is_uuid(value):
            problems.append(f"metadata {label} {value!r} is not a UUID")
    for label, value in (("Machine", md.machine), ("ControllerMachineID", md.controller_machine_id)):
        if value and not is_machine_id(value):
            problems.append(f"metadata {label} {value!r} is not a Juju machine id (like 0 or 0/lxd/1)")
    return problems


def is_machine_id(text: str) -> bool:
    """Return True if `text` is a Juju machine id (names.IsValidMachine): `0`, `12`, `0/lxd/1`."""
    return _MACHINE_ID_RE.fullmatch(text) is not None


def is_machine_tag_suffix(text: str) -> bool:
    """Return True if `text` is what follows "machine-" in a machine tag: `0`, `0-lxd-1`."""
    return _MACHINE_TAG_SUFFIX_RE.fullmatch(text) is not None


def restore_machine_id(md: BackupMetadata) -> str:
    """Given an archive's metadata, return the backed-up controller machine id (ControllerMachineID,
    else Machine, else "0"), which restore writes into unit names, paths and mongo JS.

    Raise VerifyError (exit 8) if it is not a Juju machine id, RefusedError (exit 6) for a container
    machine (`0/lxd/1`: restore installs `jujud-machine-N` units for top-level machines only)."""
    machine_id = md.controller_machine_id or md.machine or "0"
    if not is_machine_id(machine_id):
        raise VerifyError(
            f"archive machine id {machine_id!r} is not a Juju machine id",
            "the archive's metadata.json (ControllerMachineID/Machine) is damaged or forged; "
            "`jujubackup verify FILE` lists every check",
        )
    if "/" in machine_id:
        raise RefusedError(
            f"archive machine id {machine_id!r} is a container machine; restore brings back "
            "top-level controller machines only",
            "restore a backup taken on a top-level controller machine",
        )
    return machine_id


def archive_name(started: datetime) -> str:
    """Given the backup's start time (naive = UTC), return `juju-backup-YYYYMMDD-HHMMSS.tar.gz` (UTC)."""
    return f"juju-backup-{_as_utc(started).strftime(ID_TIME_FORMAT)}.tar.gz"


def resolve_id(ids: Iterable[str], query: str) -> str:
    """Given the known backup IDs and a query, return the one ID it names.

    The query is an exact ID, a unique prefix, or `latest` (the newest ID by its timestamp).
    Raise NotFoundError (exit 5) when nothing matches or the prefix is ambiguous, listing candidates.
    """
    known = sorted(set(ids))
    if query == "latest":
        if not known:
            raise NotFoundError("no backups stored, so 'latest' names nothing", "run `jujubackup create`")
        return max(known, key=lambda i: (bool(_ID_RE.match(i)), i))
    if query in known:
        return query
    matches = [i for i in known if query and i.startswith(query)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFoundError(f"no backup ID matches {query!r}", _candidates_hint("known IDs", known))
    raise NotFoundError(
        f"backup ID prefix {query!r} is ambiguous ({len(matches)} matches)",
        _candidates_hint("give a longer prefix; matches", matches),
    )


def _candidates_hint(label: str, candidates: list[str], limit: int = 10) -> str:
    """Return a hint line listing up to `limit` candidates (newest first)."""
    if not candidates:
        return "no backups are stored; `jujubackup list` shows the catalog"
    shown = sorted(candidates, reverse=True)[:limit]
    more = f" (+{len(candidates) - limit} more)" if len(candidates) > limit else ""
    return f"{label}: {', '.join(shown)}{more}"
