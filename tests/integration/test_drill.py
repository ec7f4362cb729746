"""drill through the CLI against the lab (issue 16 "Done when").

create on ctl0, then `drill latest --target spare0` and `drill --archive FILE --target spare0`: every
check passes, the target's egress is closed while the drilled controller runs (spare0 -> ctl0's API
and mongo ports refused), ctl0's database is unchanged; a dump damaged after its checksums were made
fails the count check with exit 8 and the JUnit file names it; live machines are refused (exit 6).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import bson
import pytest
from lxml import etree

from jujubackup import archive
from tests.conftest import LabFactory
from tests.integration.test_restore import active, create_and_download, db_unit, jb, juju_db, ok
from tests.lab.lab import LabHost

pytestmark = pytest.mark.lab

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parents[1] / "unit" / "junit.xsd")))
CHECKS = [
    "isolation",
    "restore",
    "juju-db-primary",
    "jujud-active",
    "api-certificate",
    "api-login",
    "document-counts",
    "uuids",
]


def connect_from(host: LabHost, ip: str, port: int) -> str:
    """Try a TCP connection from `host` to ip:port; return 'connected' or bash's error text."""
    out = host.ssh(f"timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' && echo connected")
    return (out.stdout + out.stderr).strip()


def junit_cases(path: Path) -> dict[str, str | None]:
    """Validate the JUnit file against the schema; return {testcase: failure message or None}."""
    doc = etree.parse(str(path))
    SCHEMA.assertValid(doc)
    cases = {}
    for case in doc.iter("testcase"):
        failure = case.find("failure")
        cases[str(case.get("name"))] = None if failure is None else str(failure.get("message"))
    return cases


def damage_dump(src: Path, dst: Path) -> None:
    """Copy archive `src` to `dst` with a workload machine's document removed from
    dump/juju/machines.bson and manifest.json's checksums regenerated (everything else kept)."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(src, "r:gz") as tar:
        for member in tar:
            data = tar.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            members.append((member, data))
    files = {m.name.removeprefix("juju-backup/"): d for m, d in members if d is not None}
    docs = bson.decode_all(files["dump/juju/machines.bson"])
    workload = next(d for d in docs if 2 not in d.get("jobs", []))  # not JobManageModel
    files["dump/juju/machines.bson"] = b"".join(bson.encode(d) for d in docs if d is not workload)
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = [
        {"path": e.path, "size": e.size, "sha256": e.sha256}
        for e in sorted(archive_entries(files), key=lambda e: e.path)
    ]
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(dst, "w:gz") as out:
        for member, data in members:
            if data is None:
                out.addfile(member)
                continue
            new = files[member.name.removeprefix("juju-backup/")]
            member.size = len(new)
            out.addfile(member, io.BytesIO(new))


def archive_entries(files: dict[str, bytes]) -> list[archive.ManifestEntry]:
    import hashlib

    return [
        archive.ManifestEntry(p, len(d), hashlib.sha256(d).hexdigest())
        for p, d in files.items()
        if p != "manifest.json"
    ]


@pytest.mark.parametrize("profile", ["juju-2.9", "juju-2.8"])
def test_drill_latest_passes_isolated_and_the_source_is_unchanged(
    lab_factory: LabFactory, tmp_path: Path, profile: str
) -> None:
    lab = lab_factory(controllers=1, spares=1, profile=profile, machines=1)
    ctl, spare, m0 = lab.host("ctl0"), lab.host("spare0"), lab.host("m0")
    archive_file = tmp_path / "backup.tar.gz"
    backup_id = create_and_download(lab, archive_file)
    before = juju_db(ctl)
    junit = tmp_path / "drill.xml"

    drilled = ok(
        jb(
            lab,
            "-H",
            "ctl0",
            "--format",
            "json",
            "drill",
            "latest",
            "--target",
            "spare0",
            "--junit",
            str(junit),
            "--keep",
        )
    )
    report = json.loads(drilled.stdout)
    assert report["backup"] == backup_id and report["result"] == "passed", report
    assert [c["check"] for c in report["checks"]] == CHECKS
    assert all(c["result"] == "passed" for c in report["checks"]), report["checks"]
    assert junit_cases(junit) == dict.fromkeys(CHECKS)
    probed = {(p["address"], p["port"]) for p in report["isolation"]["probes"]}
    assert {(ctl.ip, 17070), (ctl.ip, 37017)} <= probed

    # --keep: the drilled controller runs, isolated: it cannot reach ctl0's API or mongo ...
    assert active(spare, db_unit(spare), "jujud-machine-0") == ["active", "active"]
    for port in (17070, 37017):
        assert "Connection refused" in connect_from(spare, ctl.ip, port)
    # ... which both answer (from the lab's host), so the refusal is the isolation's doing.
    assert active(ctl, db_unit(ctl), "jujud-machine-0") == ["active", "active"]
    assert connect_from(ctl, ctl.ip, 17070) == "connected"
    # units disabled: a reboot (which drops the egress rules) does not start the drilled controller
    assert spare.ssh("systemctl is-enabled jujud-machine-0").stdout.strip() == "disabled"
    assert juju_db(ctl) == before
    # nothing was re-pointed: the model's machine still has ctl0 as its controller
    assert ctl.ip in (m0.root / "var/lib/juju/agents/machine-1/agent.conf").read_text()
    assert spare.ip not in (m0.root / "var/lib/juju/agents/machine-1/agent.conf").read_text()

    # A live machine is refused (6) and left alone; --force drills over it (a drilled target is reused).
    refused = jb(lab, "drill", "--archive", str(archive_file), "--target", "spare0")
    assert refused.returncode == 6, refused.stderr
    assert "runs on this host: it is a live Juju machine" in refused.stderr and "--force" in refused.stderr
    again = ok(jb(lab, "drill", "--archive", str(archive_file), "--target", "spare0", "--force"))
    assert f"drill of {backup_id} on spare0: PASSED" in again.stdout
    for name in CHECKS:
        assert f"{name} " in again.stdout
    assert "wipe spare0" in again.stdout
    assert active(spare, db_unit(spare), "jujud-machine-0") == ["inactive", "inactive"]
    assert juju_db(ctl) == before


def test_drill_refuses_a_live_controller_or_a_machine_of_the_model(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=1, spares=0, machines=1)
    ctl, m0 = lab.host("ctl0"), lab.host("m0")
    archive_file = tmp_path / "backup.tar.gz"
    create_and_download(lab, archive_file)
    before = juju_db(ctl)
    refused = jb(
        lab, "drill", "--archive", str(archive_file), "--target", "ctl0", "--junit", str(tmp_path / "j.xml")
    )
    assert refused.returncode == 6, refused.stderr
    assert "an address of machine 0 of model" in refused.stderr  # its own address is in the backup
    assert ctl.ssh("nft list tables").stdout.strip() == ""
    assert active(ctl, db_unit(ctl), "jujud-machine-0") == ["active", "active"]
    assert juju_db(ctl) == before
    assert not (tmp_path / "j.xml").exists()  # nothing was drilled: no report to show
    m0.ssh("systemctl stop jujud-machine-1", check=True)  # not live: still the backup's machine
    refused = jb(lab, "drill", "--archive", str(archive_file), "--target", "m0")
    assert refused.returncode == 6, refused.stderr
    assert "in the backup" in refused.stderr or "of the backup's" in refused.stderr, refused.stderr
    assert m0.ssh("nft list tables").stdout.strip() == ""


def test_a_dump_damaged_after_its_checksums_fails_the_count_check(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=1, spares=1, machines=1)
    good, damaged = tmp_path / "good.tar.gz", tmp_path / "damaged.tar.gz"
    create_and_download(lab, good)
    damage_dump(good, damaged)
    ok(jb(lab, "verify", str(damaged)))  # the checksums vouch for the damaged dump
    junit = tmp_path / "drill.xml"

    failed = jb(lab, "drill", "--archive", str(damaged), "--target", "spare0", "--junit", str(junit))
    assert failed.returncode == 8, failed.stderr
    assert "1 of 8 checks failed: document-counts" in failed.stderr
    cases = junit_cases(junit)
    assert [name for name, failure in cases.items() if failure] == ["document-counts"]
    assert "machines: restored 1 = the dump's 1, but the backup recorded 2 when it was made" in str(
        cases["document-counts"]
    ), cases
    assert "FAILED" in failed.stdout
