"""juju-3.6 writes every state change as a MongoDB transaction (juju/mgo v3.0.9 sstxn): an online
backup taken while the restored machine's address changes carries that change as an `applyOps`
transaction entry in oplog.bson, which `mongorestore --oplogReplay` (mongo-tools 100.x) applies after
the re-addressed collections. The disaster-recovery restore must still end with the new host's
address (and harvesting off), while the transaction's other writes are replayed."""

from __future__ import annotations

import base64
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import bson
import pytest

from tests.conftest import LabFactory
from tests.integration.test_restore import jb, juju_db, model_uuid, mongo, ok
from tests.lab import provision
from tests.lab.cli import jb_start
from tests.lab.lab import Lab, LabHost
from tests.lab.standins.tools import OPLOG_GATE, OPLOG_GATE_REACHED

pytestmark = pytest.mark.lab

DURING_DUMP = "10.201.0.250"  # an address the machiner "found" while the dump ran
LSID = {"id": {"$binary": {"base64": base64.b64encode(b"jujubackup-sstxn").decode(), "subType": "04"}}}


def in_txn(db: str, cmd: dict[str, Any], start: bool = False) -> str:
    """A shell statement running `cmd` in transaction 1 of LSID (as a driver sends it)."""
    cmd = {**cmd, "lsid": LSID, "txnNumber": {"$numberLong": "1"}, "autocommit": False}
    if start:
        cmd["startTransaction"] = True
    return f'print(JSON.stringify(db.getSiblingDB("{db}").runCommand({json.dumps(cmd)})))'


def sstxn_during_dump(ctl: LabHost, uuid: str) -> None:
    """What juju 3.6 writes when the machiner sets machine 0's addresses and a user turns harvesting
    on, as one server-side transaction (sstxn runTxn: assert by find, each update with
    `$set: {txn-revno}`, the txns.log insert (updateLog), commit)."""
    m0, config = f"{uuid}:0", f"{uuid}:e"
    moved = [{"value": DURING_DUMP, "addresstype": "ipv4", "networkscope": "local-cloud",
              "origin": "provider"}]
    out = mongo(ctl, [
        in_txn("juju", {"find": "machines", "filter": {"_id": m0}}, start=True),
        in_txn("juju", {"update": "machines", "updates": [{"q": {"_id": m0}, "u": {"$set": {
            "addresses": moved, "machineaddresses": moved, "txn-revno": {"$numberLong": "77"}}}}]}),
        in_txn("juju", {"update": "settings", "updates": [{"q": {"_id": config}, "u": {"$set": {
            "settings.provisioner-harvest-mode": "all", "settings.logging-config": "<root>=DEBUG"}}}]}),
        in_txn("juju", {"insert": "txns.log", "documents": [
            {"machines": {"d": [m0], "r": [77]}, "settings": {"d": [config], "r": [9]}}]}),
        in_txn("admin", {"commitTransaction": 1}),
    ])
    replies = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(replies) == 5 and all(r.get("ok") == 1 for r in replies), out


def create_during_a_transaction(lab: Lab, ctl: LabHost) -> str:
    """Run an online create whose mongodump waits before reading the oplog while the transaction
    commits; return the backup ID."""
    gate = ctl.root / OPLOG_GATE.lstrip("/")
    reached = ctl.root / "var/snap/juju-db/common" / OPLOG_GATE_REACHED  # next to the dump dir
    gate.touch()
    proc = jb_start(lab, "-H", ctl.name, "create")
    try:
        deadline = time.monotonic() + 300
        while not reached.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "mongodump never reached the oplog gate"
            time.sleep(0.1)
        sstxn_during_dump(ctl, model_uuid(ctl))
    finally:
        gate.unlink(missing_ok=True)
        reached.unlink(missing_ok=True)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return stdout.strip().splitlines()[-1]


def oplog_entries(archive: Path) -> list[dict[str, Any]]:
    with tarfile.open(archive) as outer:
        member = outer.extractfile("juju-backup/dump/oplog.bson")
        assert member is not None
        return bson.decode_all(member.read())


def test_a_transaction_during_an_online_dump_does_not_undo_the_readdressing(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    # a 3.x backup restores over a freshly bootstrapped controller (a bare machine has no dqlite node)
    lab = lab_factory(controllers=1, bootstrapped_spares=1, profile="juju-3.6")
    ctl, spare = lab.host("ctl0"), lab.host("boot0")
    uuid = model_uuid(ctl)
    backup_id = create_during_a_transaction(lab, ctl)
    archive = tmp_path / "backup.tar.gz"
    ok(jb(lab, "-H", "ctl0", "download", backup_id, str(archive)))

    # The dump's collections hold the address from before, its oplog the transaction (the test can fail).
    with tarfile.open(archive) as outer:
        machines = outer.extractfile("juju-backup/dump/juju/machines.bson")
        assert machines is not None
        dumped = {d["_id"]: d for d in bson.decode_all(machines.read())}
    assert {a["value"] for a in dumped[f"{uuid}:0"]["addresses"]} == {ctl.ip}
    txns = [e for e in oplog_entries(archive) if e["op"] == "c" and "lsid" in e]
    assert len(txns) == 1 and txns[0]["ns"] == "admin.$cmd"
    assert [(o["op"], o["ns"]) for o in txns[0]["o"]["applyOps"]] == [
        ("u", "juju.machines"), ("u", "juju.settings"), ("i", "juju.txns.log")
    ]
    ctl.power_off()

    result = ok(jb(lab, "restore", "--archive", str(archive), "--target", spare.name, "--yes"))
    after = juju_db(spare)
    machine = after["machines"][f"{uuid}:0"]
    assert {a["value"] for a in machine["addresses"]} == {spare.ip}
    assert {a["value"] for a in machine["machineaddresses"]} - {"127.0.0.1", "::1"} == {spare.ip}
    assert DURING_DUMP not in json.dumps(machine, default=str)
    config = after["settings"][f"{uuid}:e"]["settings"]
    assert config["provisioner-harvest-mode"] == "none"
    # The rest of the transaction was replayed: only the rewritten fields were taken out of it.
    assert machine["txn-revno"] == 77 and config["logging-config"] == "<root>=DEBUG"
    logged = [d["machines"] for d in after["txns.log"].values() if "machines" in d]
    assert logged == [{"d": [f"{uuid}:0"], "r": [77]}]
    assert f"-> {spare.ip}" in result.stdout
    assert spare.ssh("systemctl is-active jujud-machine-0").stdout.strip() == "active"

    # The restored 3.6 controller's own writes are transactions too: the machiner healing
    # machineaddresses writes one applyOps entry (txn-revno bumped, txns.log), not a plain update.
    elsewhere = [{"value": DURING_DUMP, "addresstype": "ipv4", "networkscope": "local-cloud"}]
    stale = {"update": "machines",
             "updates": [{"q": {"_id": f"{uuid}:0"}, "u": {"$set": {"machineaddresses": elsewhere}}}]}
    mongo(spare, [f'db.getSiblingDB("juju").runCommand({json.dumps(stale)})'], machine_id="0")
    ok(spare.ssh("systemctl restart jujud-machine-0"))
    deadline = time.monotonic() + 60
    while spare.ip not in json.dumps(juju_db(spare)["machines"][f"{uuid}:0"]["machineaddresses"]):
        assert time.monotonic() < deadline, "jujud did not heal machineaddresses"
        time.sleep(0.5)
    oplog = provision.read_db(spare.root, spare.profile, dbs=["local"])["local"]["oplog.rs"]
    healed = [e for e in oplog if e.get("lsid") and e["o"]["applyOps"][0]["ns"] == "juju.machines"]
    assert len(healed) == 1, healed
    assert healed[0]["o"]["applyOps"][0]["o"]["$set"]["txn-revno"] == 78
    assert [o["ns"] for o in healed[0]["o"]["applyOps"]] == ["juju.machines", "juju.txns.log"]

