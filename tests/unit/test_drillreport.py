"""drillreport (PURE): counting a dump, the checks' verdicts, the JUnit file against the schema."""

from __future__ import annotations

import json
from pathlib import Path

import bson
import pytest
from lxml import etree

from jujubackup import drillreport as D
from jujubackup.errors import VerifyError

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).with_name("junit.xsd"))))
CU, M1, M2 = "c0c0c0c0-0000-4000-8000-000000000000", "a1a1a1a1-0000-4000-8000-000000000000", "b2b2"


def _bson(*docs: dict[str, object]) -> bytes:
    return b"".join(bson.encode(d) for d in docs)


def _side(recorded: dict[str, object] | None = None) -> D.BackupSide:
    files = {
        "dump/juju/models.bson": _bson({"_id": M1, "name": "controller"}, {"_id": M2, "name": "default"}),
        "dump/juju/machines.bson": _bson({"_id": f"{M1}:0"}, {"_id": f"{M2}:0"}, {"_id": f"{M2}:1"}),
    }
    manifest = {"dump-documents": recorded} if recorded is not None else {}
    return D.backup_side(files, manifest, CU)


def _report(*checks: D.Check) -> D.Report:
    return D.Report(
        backup_id="20260101-000000.x",
        target="spare0",
        started="2026-01-01T00:00:00Z",
        isolation={"firewall": "nftables"},
        checks=list(checks),
    )


def test_count_documents_walks_whole_documents() -> None:
    assert D.count_documents(b"") == 0
    assert D.count_documents(_bson({"a": 1}, {"b": "x" * 300}, {})) == 3
    with pytest.raises(VerifyError, match="ends inside"):
        D.count_documents(_bson({"a": 1}) + b"\x10\x00")
    with pytest.raises(VerifyError, match="malformed"):
        D.count_documents(_bson({"a": 1})[:-1] + b"\x07")


def test_backup_side_counts_the_dump_and_reads_the_record() -> None:
    side = _side({"models": 2, "machines": 4, "applications": True, "bogus": 9})
    assert dict(side.counts) == {"models": 2, "machines": 3, "applications": 0}
    assert dict(side.recorded) == {"models": 2, "machines": 4}  # a bool and unknown keys are dropped
    assert side.model_uuids == tuple(sorted([M1, M2]))


def test_counts_pass_only_when_restored_dump_and_record_agree() -> None:
    ok, detail = D.counts_verdict(
        _side({"models": 2, "machines": 3}), {"models": 2, "machines": 3, "applications": 0}
    )
    assert ok, detail
    assert detail == "models 2; machines 3; applications 0"
    ok, detail = D.counts_verdict(_side(), {"models": 2, "machines": 2, "applications": 0})
    assert not ok and "machines: restored 2, the backup's dump holds 3" in detail
    ok, detail = D.counts_verdict(_side({"machines": 4}), {"models": 2, "machines": 3, "applications": 0})
    assert not ok and "the backup recorded 4 when it was made" in detail
    ok, detail = D.counts_verdict(_side(), {"models": None, "machines": 3, "applications": 0})
    assert not ok and "did not answer" in detail


def test_primary_and_uuid_verdicts() -> None:
    status = {"ok": 1, "set": "juju", "members": [{"name": "a:37017", "self": True, "stateStr": "PRIMARY"}]}
    assert D.primary_verdict(status)[0]
    status["members"][0]["stateStr"] = "SECONDARY"  # type: ignore[index]
    assert D.primary_verdict(status) == (False, "a:37017 is SECONDARY in replica set 'juju'")
    assert not D.primary_verdict({"ok": 0, "errmsg": "not running with --replSet"})[0]
    settings = {
        "ok": 1,
        "cursor": {"firstBatch": [{"_id": "controllerSettings", "settings": {"controller-uuid": CU}}]},
    }
    models = {"ok": 1, "cursor": {"firstBatch": [{"_id": M2}, {"_id": M1}]}}
    assert D.uuids_verdict(_side(), settings, models)[0]
    ok, detail = D.uuids_verdict(_side(), settings, {"ok": 1, "cursor": {"firstBatch": [{"_id": M1}]}})
    assert not ok and f"missing: {M2}" in detail


def test_parse_results_needs_every_answer() -> None:
    assert D.parse_results({"results": [{"ok": 1}, {"ok": 1}]}, 2) == [{"ok": 1}, {"ok": 1}]
    with pytest.raises(VerifyError, match="1 of 2"):
        D.parse_results({"results": [{"ok": 1}]}, 2)
    with pytest.raises(VerifyError):
        D.parse_results(["not", "a", "dict"], 1)


def test_junit_file_is_valid_against_the_schema_and_names_the_failed_check() -> None:
    report = _report(
        D.Check("isolation", True, 0.25, "egress closed with nftables"),
        D.Check("document-counts", False, 0.5, "machines: restored 2, the backup's dump holds 3\nmore"),
        D.Check("uuids", True, 0.1, "hostile \x00\x1b text <&> from a controller"),
    )
    xml = D.junit_xml(report)
    doc = etree.fromstring(xml)
    SCHEMA.assertValid(doc)
    suite = doc.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["document-counts"]
    failure = suite.find("testcase[@name='document-counts']/failure")
    assert failure is not None and failure.get("message") == "machines: restored 2, the backup's dump holds 3"
    assert report.exit_code() == 8
    assert _report(D.Check("isolation", True, 0.1, "x")).exit_code() == 0


def test_junit_schema_rejects_what_ci_systems_cannot_read() -> None:
    """The schema test can fail: a testcase without a time, a suite without counts."""
    bad = (
        b'<testsuites><testsuite name="x" tests="1" failures="0" errors="0" time="1" '
        b'timestamp="2026-01-01T00:00:00" hostname="h"><testcase name="a" classname="c"/>'
        b"</testsuite></testsuites>"
    )
    assert not SCHEMA.validate(etree.fromstring(bad))


def test_report_data_and_rows() -> None:
    report = _report(D.Check("jujud-active", True, 1.234, "jujud-machine-0.service is active"))
    data = json.loads(json.dumps(report.as_dict()))
    assert data["result"] == "passed" and data["checks"][0] == {
        "check": "jujud-active",
        "result": "passed",
        "seconds": 1.23,
        "detail": "jujud-machine-0.service is active",
    }
    assert report.rows()[0]["seconds"] == "1.23"
