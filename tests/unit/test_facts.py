"""facts: the probe's JSON document parses into ControllerFacts (pure, data-driven)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from jujubackup import facts
from jujubackup.errors import RefusedError
from jujubackup.profiles import JUJU_29

MODEL = "ffffffff-0000-1111-2222-333333333333"
CONTROLLER = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def _status(self_state: str = "PRIMARY") -> dict[str, Any]:
    return {
        "ok": 1,
        "set": "juju",
        "members": [
            {
                "name": "10.201.0.10:37017",
                "health": 1,
                "stateStr": self_state,
                "self": True,
                "tags": {"juju-machine-id": "0"},
            },
            {
                "name": "10.201.0.11:37017",
                "health": 1,
                "stateStr": "SECONDARY",
                "tags": {"juju-machine-id": "1"},
            },
            {
                "name": "10.201.0.12:37017",
                "health": 0,
                "stateStr": "(not reachable/healthy)",
            },
        ],
    }


def probe_doc(**overrides: Any) -> dict[str, Any]:
    """A probe document as probe.sh.j2 prints it for a healthy juju-2.9 machine 0 (HA, 3 members)."""
    mongo_lines = [
        {"ok": 1},
        _status(),
        {"ok": 1, "config": {"members": [{"host": "10.201.0.12:37017", "tags": {"juju-machine-id": "2"}}]}},
        {
            "ok": 1,
            "databases": [
                {"name": "juju", "sizeOnDisk": 9000},
                {"name": "admin", "sizeOnDisk": 5},
                {"name": "blobstore", "sizeOnDisk": 700},
                {"name": "extra", "sizeOnDisk": 33},
            ],
        },
        {"ok": 1, "db": "juju", "dataSize": 4096},
        {"ok": 1, "db": "logs", "dataSize": 1024},
        {"ok": 1, "db": "blobstore", "dataSize": 0},
        {"ok": 1, "db": "presence", "dataSize": 0},
        {"ok": 1, "db": "osimages", "dataSize": 0},
        {"ok": 1, "cursor": {"firstBatch": [{"_id": f"{MODEL}:0", "instanceid": "juju-abc-0"}]}},
    ]
    doc: dict[str, Any] = {
        "probe": 1,
        "hostname": "juju-abc-0",
        "paths": [
            "/snap/bin/juju-db.mongodump",
            "/snap/bin/juju-db.mongo",
            "/snap/bin/juju-db.mongod",
            "/var/snap/juju-db/common/db",
        ],
        "agent_conf": {
            "path": "/var/lib/juju/agents/machine-0/agent.conf",
            "format": "2.0",
            "tag": "machine-0",
            "controller": f"controller-{CONTROLLER}",
            "model": f"model-{MODEL}",
            "upgradedToVersion": "2.9.42",
            "stateport": "37017",
            "apiport": "17070",
            "mongoversion": "4.4.18/wiredTiger",
            "apiaddresses": ["10.201.0.10:17070"],
        },
        "tools_link": "/var/lib/juju/tools/2.9.42-focal-amd64",
        "profile_guess": "juju-2.9",
        "services": [
            {
                "name": "snap.juju-db.daemon",
                "LoadState": "loaded",
                "ActiveState": "active",
                "SubState": "running",
                "MainPID": "123",
            },
            {
                "name": "jujud-machine-0",
                "LoadState": "loaded",
                "ActiveState": "active",
                "SubState": "running",
                "MainPID": "456",
            },
        ],
        "versions": {"mongod": "db version v4.4.18", "mongodump": "mongodump version: 100.5.1"},
        "mongo": {"rc": 0, "lines": [json.dumps(x) for x in mongo_lines], "error": ""},
        "os_release": {"ID": "ubuntu", "VERSION_ID": "20.04", "VERSION_CODENAME": "focal"},
        "backup_dir": "/var/lib/juju/backups",
        "backup_dir_exists": False,
        "free_bytes": 50 * 1024**3,
        "pigz": True,
    }
    doc.update(overrides)
    return doc


def test_healthy_juju29_controller() -> None:
    f = facts.parse_probe(probe_doc(), "ctl0")
    assert (f.host, f.profile, f.machine_id, f.tag) == ("ctl0", "juju-2.9", "0", "machine-0")
    assert (f.juju_version, f.series, f.base) == ("2.9.42", "focal", "ubuntu@20.04")
    assert (f.controller_uuid, f.model_uuid) == (CONTROLLER, MODEL)
    assert f.state_port == 37017 and f.api_port == 17070
    assert f.tools["mongodump"] == "/snap/bin/juju-db.mongodump"
    assert "mongorestore" not in f.tools  # not among the existing paths
    assert (f.mongo_version, f.tools_version) == ("4.4.18", "100.5.1")
    assert f.service("snap.juju-db.daemon") is not None and f.service("jujud-machine-0").main_pid == 456
    assert f.ha_nodes == 3 and f.primary == "10.201.0.10:37017"
    assert [m.machine_id for m in f.replset] == ["0", "1", "2"]
    assert [m.health for m in f.replset] == [1, 1, 0]
    assert f.instance_id == "juju-abc-0"
    assert f.db_sizes == {"juju": 4096, "logs": 1024, "blobstore": 700, "extra": 33}
    assert f.estimate_bytes == 4096 + 1024 + 700 + 33
    assert f.free_bytes == 50 * 1024**3 and f.pigz
    assert f.unhealthy_reasons(JUJU_29) == []
    as_dict = f.to_dict()
    assert as_dict["ha_nodes"] == 3 and json.dumps(as_dict)


def test_juju28_deb_layout() -> None:
    doc = probe_doc(
        paths=[
            "/usr/lib/juju/mongo3.2/bin/mongodump",
            "/usr/lib/juju/mongo3.2/bin/mongo",
            "/var/lib/juju/db",
        ],
        tools_link="/var/lib/juju/tools/2.8.10-bionic-amd64",
        os_release={"ID": "ubuntu", "VERSION_ID": "18.04", "VERSION_CODENAME": "bionic"},
    )
    doc["agent_conf"]["upgradedToVersion"] = ""
    f = facts.parse_probe(doc, "ctl0")
    assert (f.profile, f.juju_version, f.series) == ("juju-2.8", "2.8.10", "bionic")


def test_juju_db_down_is_unhealthy_but_parses() -> None:
    doc = probe_doc(mongo={"rc": 1, "lines": [], "error": "connection refused"})
    doc["services"][0]["ActiveState"] = "inactive"
    f = facts.parse_probe(doc, "ctl0")
    assert not f.mongo_ok and f.replset == [] and f.ha_nodes == 1
    assert f.instance_id == facts.UNKNOWN
    reasons = f.unhealthy_reasons(JUJU_29)
    assert any("snap.juju-db.daemon is not active" in r for r in reasons)
    assert any("does not answer" in r for r in reasons)


def test_member_in_recovery_is_unhealthy() -> None:
    doc = probe_doc()
    doc["mongo"]["lines"][1] = json.dumps(_status("RECOVERING"))
    f = facts.parse_probe(doc)
    assert f.unhealthy_reasons(JUJU_29) == ["this replica-set member is RECOVERING"]


def test_replset_error_is_reported() -> None:
    doc = probe_doc()
    doc["mongo"]["lines"][1] = json.dumps({"ok": 0, "errmsg": "not running with --replSet"})
    f = facts.parse_probe(doc)
    assert f.replset == [] and f.replset_error == "not running with --replSet"


def test_garbage_mongo_line_does_not_break_parsing() -> None:
    doc = probe_doc()
    doc["mongo"]["lines"][3] = "{not json"
    f = facts.parse_probe(doc)
    assert f.db_sizes == {"juju": 4096, "logs": 1024}


def test_upstart_controller_refused() -> None:
    doc = probe_doc(paths=["/etc/init/juju-db.conf", "/var/lib/juju/db"])
    doc["agent_conf"]["format"] = "1.18"
    with pytest.raises(RefusedError, match=r"Juju 1\.x"):
        facts.parse_probe(doc)


def test_no_agent_conf_refused() -> None:
    doc = copy.deepcopy(probe_doc())
    doc["agent_conf"]["tag"] = ""
    with pytest.raises(RefusedError, match=r"no machine agent\.conf"):
        facts.parse_probe(doc, "spare0")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/lib/juju/tools/2.9.42-focal-amd64", ("2.9.42", "focal")),
        ("/var/lib/juju/tools/2.8-beta1.1-bionic-amd64", ("2.8-beta1.1", "bionic")),
        ("/var/lib/juju/tools/3.1.6-ubuntu-amd64", ("3.1.6", "ubuntu")),
        ("", ("", "")),
    ],
)
def test_split_tools_dir(path: str, expected: tuple[str, str]) -> None:
    assert facts.split_tools_dir(path) == expected


def test_machine_ids() -> None:
    assert facts.machine_id_of("machine-12") == "12"
    with pytest.raises(RefusedError):
        facts.machine_id_of("unit-controller-0")


def test_juju3_uses_os_release_series() -> None:
    doc = probe_doc(
        tools_link="/var/lib/juju/tools/3.1.6-ubuntu-amd64",
        os_release={"ID": "ubuntu", "VERSION_ID": "22.04", "VERSION_CODENAME": "jammy"},
    )
    doc["agent_conf"]["upgradedToVersion"] = "3.1.6"
    f = facts.parse_probe(doc)
    assert (f.juju_version, f.series, f.base) == ("3.1.6", "jammy", "ubuntu@22.04")


def test_unfinished_restore_lock_and_missing_unit() -> None:
    plain = facts.parse_probe(probe_doc(), "ctl0")
    assert plain.unfinished_restore() == "" and plain.lock_holder is None
    assert not plain.missing_unit("jujud-machine-0")
    doc = probe_doc(
        restore_journal={"exists": True, "dir": "/var/lib/jujubackup-restore", "done": ["stop", "snapshot"]},
        lock={"held": True, "holder": '{"operation": "create", "holder": "me@ws", "pid": 7}'},
    )
    doc["services"][1]["LoadState"] = "not-found"
    f = facts.parse_probe(doc, "ctl0")
    assert f.unfinished_restore().startswith("unfinished restore on ctl0")
    assert "stop, snapshot" in f.unfinished_restore()
    assert f.lock_holder == {"operation": "create", "holder": "me@ws", "pid": 7}
    assert f.missing_unit("jujud-machine-0")
    unrecorded = facts.parse_probe(probe_doc(lock={"held": True, "holder": ""}), "ctl0")
    assert unrecorded.lock_holder == {}


def test_the_controllers_models_are_read_as_names_only() -> None:
    doc = probe_doc()
    found = {"ok": 1, "cursor": {"firstBatch": [{"_id": "u1", "name": "controller"},
                                                {"_id": "u2", "name": "Bad Name\x1b[31m"}, "junk"]}}
    doc["mongo"]["lines"].append(json.dumps(found))
    assert facts.parse_probe(doc, "ctl0").models == ["controller", "?", "?"]
    unread = probe_doc()
    assert facts.parse_probe(unread, "ctl0").models is None  # the probe asked nothing: not "no models"
    unread["mongo"]["lines"].append(json.dumps({"ok": 0, "errmsg": "unauthorized"}))
    assert facts.parse_probe(unread, "ctl0").models is None
