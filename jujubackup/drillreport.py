"""PURE: a restore drill's checks — what the backup says, what the restored controller answered, the
verdict of each check, and the report (tabular/json/yaml data, JUnit XML). No I/O here.

The backup's side is read on the workstation from the archive's own BSON (`dump/juju/*.bson`) and,
when the backup was made by jujubackup, the document counts mongodump reported when the backup was
made (manifest.json `dump-documents`): a dump changed after the backup (documents removed and the
manifest's checksums regenerated) then disagrees with what was recorded, and the count check fails.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import bson

from jujubackup.errors import EXIT_OK, EXIT_VERIFY, VerifyError

COUNTED = ("models", "machines", "applications")
"""The `juju` collections whose documents the count check compares (Juju's state/allcollections.go
names: modelsC, machinesC, applicationsC)."""

DUMP_MEMBERS = tuple(f"dump/juju/{c}.bson" for c in (*COUNTED, "controllers"))
PASSED, FAILED = "passed", "failed"


@dataclass(frozen=True)
class BackupSide:
    """What the backup holds, as the checks compare it: documents per counted collection in its dump,
    the counts recorded when it was made (empty when it records none), its controller and model UUIDs."""

    counts: Mapping[str, int]
    recorded: Mapping[str, int]
    controller_uuid: str
    model_uuids: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One check's verdict: its name, passed or not, wall-clock seconds and what it found."""

    name: str
    ok: bool
    seconds: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "result": PASSED if self.ok else FAILED,
            "seconds": round(self.seconds, 2),
            "detail": self.detail,
        }


@dataclass
class Report:
    """The drill's report: the backup, the target, the isolation, every check, what was left running."""

    backup_id: str
    target: str
    started: str
    isolation: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    kept: bool = False
    next_steps: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def exit_code(self) -> int:
        """0 when every check passed, 8 (verification failed) otherwise."""
        return EXIT_OK if self.ok else EXIT_VERIFY

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        """Return plain data for --format json/yaml."""
        return {
            "backup": self.backup_id,
            "target": self.target,
            "started": self.started,
            "result": PASSED if self.ok else FAILED,
            "isolation": self.isolation,
            "checks": [c.as_dict() for c in self.checks],
            "kept": self.kept,
            "next-steps": list(self.next_steps),
        }

    def rows(self) -> list[dict[str, str]]:
        """Return one table row per check (tabular output)."""
        return [
            {
                "check": c.name,
                "result": PASSED if c.ok else FAILED,
                "seconds": f"{c.seconds:.2f}",
                "detail": c.detail,
            }
            for c in self.checks
        ]


# ------------------------------------------------------------------------------------- backup side


def count_documents(data: bytes, name: str = "BSON") -> int:
    """Given a mongodump .bson file's bytes (concatenated BSON documents), return how many documents
    it holds, walking their int32 lengths without decoding them. Raise VerifyError if it is not a
    sequence of whole documents."""
    n, offset, size = 0, 0, len(data)
    while offset < size:
        if size - offset < 5:
            raise VerifyError(f"{name} ends inside a document (byte {offset} of {size})")
        (length,) = struct.unpack_from("<i", data, offset)
        if length < 5 or offset + length > size or data[offset + length - 1] != 0:
            raise VerifyError(f"{name} has a malformed document at byte {offset}")
        offset += length
        n += 1
    return n


def backup_side(
    files: Mapping[str, bytes], manifest: Mapping[str, Any] | None, controller_uuid: str
) -> BackupSide:
    """Given the archive's dump members (DUMP_MEMBERS, absent ones missing), its manifest.json (None
    when it has none) and the controller UUID of its metadata, return the BackupSide.

    A counted collection missing from the dump counts 0 (mongodump writes no file for a collection
    that does not exist). Raise VerifyError for malformed BSON."""
    counts = {
        c: count_documents(files.get(f"dump/juju/{c}.bson", b""), f"dump/juju/{c}.bson") for c in COUNTED
    }
    models = bson.decode_all(files.get("dump/juju/models.bson", b""))
    uuids = tuple(sorted(str(m.get("_id")) for m in models))
    recorded_raw = (manifest or {}).get("dump-documents")
    recorded = {
        c: int(v)
        for c, v in (recorded_raw.items() if isinstance(recorded_raw, dict) else ())
        if c in COUNTED and isinstance(v, int) and not isinstance(v, bool) and v >= 0
    }
    return BackupSide(counts, recorded, controller_uuid, uuids)


# --------------------------------------------------------------------------------- restored side


def parse_results(doc: Any, expected: int) -> list[dict[str, Any]]:
    """Given drill-query's JSON document, return its `expected` statement results (documents).
    Raise VerifyError when it holds fewer (the shell failed or the server did not answer)."""
    results = doc.get("results") if isinstance(doc, dict) else None
    if (
        not isinstance(results, list)
        or len(results) < expected
        or not all(isinstance(r, dict) for r in results)
    ):
        got = len(results) if isinstance(results, list) else 0
        raise VerifyError(f"juju-db answered {got} of {expected} queries")
    return results[:expected]


def unit_states(doc: Any) -> dict[str, str]:
    """Given drill-query's JSON document, return {unit: state} (strings only)."""
    units = doc.get("units") if isinstance(doc, dict) else None
    if not isinstance(units, dict):
        return {}
    return {str(k): str(v) for k, v in units.items()}


def primary_verdict(status: Mapping[str, Any]) -> tuple[bool, str]:
    """Given replSetGetStatus's reply, return (ok, detail): ok when the member answering is PRIMARY."""
    if status.get("ok") not in (1, 1.0, True):
        return False, f"replSetGetStatus failed: {str(status.get('errmsg') or status)[:200]}"
    members = status.get("members")
    me = (
        next((m for m in members if isinstance(m, dict) and m.get("self")), None)
        if isinstance(members, list)
        else None
    )
    if me is None:
        return False, "replSetGetStatus names no member for this server"
    state, name = str(me.get("stateStr", "")), str(me.get("name", ""))
    set_name = str(status.get("set", ""))
    if state != "PRIMARY":
        return False, f"{name} is {state or 'in no state'} in replica set {set_name!r}"
    return True, f"{name} is PRIMARY of replica set {set_name!r} ({len(members or [])} member(s))"


def count_of(reply: Mapping[str, Any]) -> int | None:
    """Given a `count` command's reply, return n (None when the command failed)."""
    n = reply.get("n")
    if reply.get("ok") not in (1, 1.0, True) or not isinstance(n, int | float) or isinstance(n, bool):
        return None
    return int(n)


def counts_verdict(backup: BackupSide, restored: Mapping[str, int | None]) -> tuple[bool, str]:
    """Given the backup's side and the restored DB's counts, return (ok, detail): ok when, for every
    counted collection, the restored DB holds as many documents as the backup's dump and as the
    backup recorded when it was made (where it recorded some)."""
    parts, ok = [], True
    for coll in COUNTED:
        dump, got, rec = backup.counts.get(coll, 0), restored.get(coll), backup.recorded.get(coll)
        if got is None:
            ok = False
            parts.append(f"{coll}: the restored DB did not answer a count")
        elif got != dump:
            ok = False
            parts.append(f"{coll}: restored {got}, the backup's dump holds {dump}")
        elif rec is not None and rec != dump:
            ok = False
            parts.append(
                f"{coll}: restored {got} = the dump's {dump}, but the backup recorded {rec} when it was "
                "made (the dump was changed after the backup)"
            )
        else:
            parts.append(f"{coll} {got}")
    return ok, "; ".join(parts)


def uuids_verdict(
    backup: BackupSide, controller_settings: Mapping[str, Any], models_reply: Mapping[str, Any]
) -> tuple[bool, str]:
    """Given the backup's side, the restored `controllers` find reply for `controllerSettings` and
    the restored `models` find reply, return (ok, detail): ok when the restored controller UUID is the
    backup's and the restored model UUIDs are exactly the backup's."""
    settings = _first_batch(controller_settings)
    restored_uuid = ""
    if settings and isinstance(settings[0].get("settings"), dict):
        restored_uuid = str(settings[0]["settings"].get("controller-uuid", ""))
    restored_models = tuple(sorted(str(d.get("_id")) for d in _first_batch(models_reply)))
    problems = []
    if restored_uuid != backup.controller_uuid:
        problems.append(
            f"controller UUID {restored_uuid or 'missing'}, the backup's is {backup.controller_uuid}"
        )
    if restored_models != backup.model_uuids:
        missing = sorted(set(backup.model_uuids) - set(restored_models))
        extra = sorted(set(restored_models) - set(backup.model_uuids))
        problems.append(
            f"model UUIDs differ (missing: {', '.join(missing) or '-'}; not in the backup: "
            f"{', '.join(extra) or '-'})"
        )
    if problems:
        return False, "; ".join(problems)
    return True, f"controller {restored_uuid}; models {', '.join(restored_models)}"


def _first_batch(reply: Mapping[str, Any]) -> list[dict[str, Any]]:
    cursor = reply.get("cursor")
    batch = cursor.get("firstBatch") if isinstance(cursor, dict) else None
    return [d for d in batch if isinstance(d, dict)] if isinstance(batch, list) else []


def statement(db: str, command: Mapping[str, Any]) -> str:
    """Given a database and a command document, return the mongo shell expression running it."""
    return f"db.getSiblingDB({json.dumps(db)}).runCommand({json.dumps(command, sort_keys=False)})"


# ------------------------------------------------------------------------------------------ JUnit


def junit_xml(report: Report, suite: str = "jujubackup drill", hostname: str = "") -> bytes:
    """Given the report, return a JUnit XML document (UTF-8): <testsuites> holding one <testsuite>
    with one <testcase> per check (classname `jujubackup.drill.<target>`), a <failure> in each failed
    one (message: the first line of what it found), as CI systems read it (the Ant/Jenkins schema)."""
    failures = len(report.failed())
    total = sum(c.seconds for c in report.checks)
    root = ET.Element(
        "testsuites",
        name=suite,
        tests=str(len(report.checks)),
        failures=str(failures),
        errors="0",
        time=f"{total:.3f}",
    )
    suite_el = ET.SubElement(
        root,
        "testsuite",
        name=f"{suite} {report.backup_id} on {report.target}",
        tests=str(len(report.checks)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total:.3f}",
        timestamp=report.started.removesuffix("Z"),
        hostname=hostname or report.target,
    )
    props = ET.SubElement(suite_el, "properties")
    for key, value in (
        ("backup", report.backup_id),
        ("target", report.target),
        ("firewall", str(report.isolation.get("firewall", ""))),
    ):
        ET.SubElement(props, "property", name=key, value=_xml_text(value))
    classname = f"jujubackup.drill.{_xml_text(report.target)}"
    for check in report.checks:
        case = ET.SubElement(
            suite_el, "testcase", name=check.name, classname=classname, time=f"{check.seconds:.3f}"
        )
        if not check.ok:
            failure = ET.SubElement(
                case,
                "failure",
                message=_xml_text(check.detail.splitlines()[0] if check.detail else "failed"),
                type="DrillCheckFailed",
            )
            failure.text = _xml_text(check.detail)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(check.detail)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _xml_text(text: str) -> str:
    """Return `text` without the characters XML 1.0 cannot hold (controller output is hostile)."""
    return "".join(
        ch
        for ch in text
        if ch in "\t\n\r" or (" " <= ch <= "\ud7ff") or ("\ue000" <= ch <= "\ufffd") or ch >= "\U00010000"
    )
