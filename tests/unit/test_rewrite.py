"""rewrite.py: re-addressing agent.conf, the dump collections and the oplog for a new host."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.int64 import Int64
from bson.timestamp import Timestamp

from jujubackup import archive, rewrite
from jujubackup.errors import RefusedError, VerifyError
from tests.unit.archive_builders import MODEL_UUID, VALID, bson_file

OLD = "10.77.116.68"
NEW = "10.201.0.99"
TARGET = rewrite.ReaddressTarget("0", NEW, "spare0", MODEL_UUID)
CONF_NAME = "var/lib/juju/agents/machine-0/agent.conf"


def fixture_conf() -> str:
    return archive.read_agent_conf(VALID, "0")


def fixture_dump(path: str) -> bytes:
    return archive.read_members(VALID, [f"dump/{path}"]).files[f"dump/{path}"]


def by_id(data: bytes) -> dict[Any, dict[str, Any]]:
    return {d["_id"]: d for d in bson.decode_all(data)}


def without(doc: dict[str, Any], fields: set[str]) -> bytes:
    """Return the BSON bytes of doc minus `fields` (type-exact comparison of everything else)."""
    return bson.encode({k: v for k, v in doc.items() if k not in fields})


# --- agent.conf --------------------------------------------------------------------------------


def test_fixture_agent_conf_keeps_every_other_byte() -> None:
    old = fixture_conf()
    result = rewrite.rewrite_agent_conf(old, NEW)
    old_lines = old.splitlines(keepends=True)
    i = old_lines.index("apiaddresses:\n")
    assert old_lines[i + 1 : i + 4] == [
        f"- {OLD}:17070\n",
        "- 10.77.116.222:17070\n",
        "- 10.77.116.194:17070\n",
    ]
    expected = "".join([*old_lines[: i + 1], f"- {NEW}:17070\n", *old_lines[i + 4 :]])
    assert result.text == expected
    assert result.text.startswith("# format 2.0\n")
    assert result.changes == (
        rewrite.Change(
            "agent.conf",
            "agent.conf",
            "apiaddresses",
            [f"{OLD}:17070", "10.77.116.222:17070", "10.77.116.194:17070"],
            [f"{NEW}:17070"],
        ),
    )


def test_fixture_agent_conf_diff_is_readable_and_redacted() -> None:
    old = fixture_conf()
    diff = rewrite.rewrite_agent_conf(old, NEW, label=CONF_NAME).diff
    assert diff.startswith(f"--- a/{CONF_NAME}\n+++ b/{CONF_NAME}\n")
    assert f"-- {OLD}:17070\n" in diff and f"+- {NEW}:17070\n" in diff
    assert [
        ln for ln in diff.splitlines() if ln.startswith(("+", "-")) and not ln.startswith(("+++", "---"))
    ] == [
        f"-- {OLD}:17070",
        "-- 10.77.116.222:17070",
        "-- 10.77.116.194:17070",
        f"+- {NEW}:17070",
    ]
    password = next(ln.split(": ", 1)[1] for ln in old.splitlines() if ln.startswith("apipassword:"))
    assert "apipassword: <redacted>" in diff
    assert password not in diff


def test_redaction_hides_secret_values_and_blocks_keeping_line_count() -> None:
    old = fixture_conf()
    red = rewrite.redact_agent_conf(old)
    assert len(red.splitlines()) == len(old.splitlines())
    for secret_key in ("statepassword", "apipassword", "oldpassword", "sharedsecret"):
        value = next(ln.split(": ", 1)[1] for ln in old.splitlines() if ln.startswith(secret_key + ":"))
        assert value not in red
    assert "PRIVATE KEY" in old and "PRIVATE KEY" not in red
    assert "BEGIN CERTIFICATE" in red  # the CA cert is public and stays readable
    assert "apiaddresses:\n- 10.77.116.68:17070\n" in red


def test_old_format_stateaddresses_crlf_and_indented_lists() -> None:
    old = (
        "# format 1.18\r\n"
        "tag: machine-0\r\n"
        "stateaddresses:\r\n"
        "  - 10.0.0.5:37017\r\n"
        "  - 10.0.0.6:37017\r\n"
        "apiaddresses:\r\n"
        '  - "10.0.0.5:17070"\r\n'
        "apiport: 17070\r\n"
    )
    result = rewrite.rewrite_agent_conf(old, NEW)
    assert result.text == (
        "# format 1.18\r\n"
        "tag: machine-0\r\n"
        "stateaddresses:\r\n"
        f"  - {NEW}:37017\r\n"
        "apiaddresses:\r\n"
        f"  - {NEW}:17070\r\n"
        "apiport: 17070\r\n"
    )
    assert [c.field for c in result.changes] == ["apiaddresses", "stateaddresses"]


def test_ipv6_new_address_is_bracketed_and_quoted() -> None:
    result = rewrite.rewrite_agent_conf("apiaddresses:\n- 10.0.0.5:17070\n", "fd00::5")
    assert result.text == "apiaddresses:\n- '[fd00::5]:17070'\n"


def test_inline_list_form() -> None:
    result = rewrite.rewrite_agent_conf("a: 1\napiaddresses: [10.0.0.5:17071, 10.0.0.6:17071]\nb: 2\n", NEW)
    assert result.text == f"a: 1\napiaddresses: [{NEW}:17071]\nb: 2\n"


def test_agent_conf_without_apiaddresses_is_refused() -> None:
    with pytest.raises(RefusedError, match="no apiaddresses"):
        rewrite.rewrite_agent_conf("# format 2.0\ntag: machine-0\n", NEW)
    with pytest.raises(RefusedError, match="cannot read the apiaddresses"):
        rewrite.rewrite_agent_conf("apiaddresses:\n- nohostport\n", NEW)


# --- the fixture's machines collection ---------------------------------------------------------


def test_fixture_machines_change_exactly_the_intended_fields() -> None:
    old_data = fixture_dump(rewrite.MACHINES)
    new_data, changes = rewrite.rewrite_collection(old_data, rewrite.MACHINES, TARGET)
    old, new = by_id(old_data), by_id(new_data)
    assert list(old) == list(new)  # same documents, same order
    m0, m1, m2 = (f"{MODEL_UUID}:{i}" for i in "012")
    address_fields = {"addresses", "machineaddresses", "preferredpublicaddress", "preferredprivateaddress"}
    assert {(c.doc_id, c.field) for c in changes} == {(m0, f) for f in address_fields} | {
        (m1, "jobs"),
        (m2, "jobs"),
    }
    # everything else is type-exactly equal
    assert without(old[m0], address_fields) == without(new[m0], address_fields)
    for m in (m1, m2):
        assert without(old[m], {"jobs"}) == without(new[m], {"jobs"})
    # the restored machine's addresses: provider/machine entries re-addressed, loopback kept
    assert new[m0]["addresses"] == [
        {
            "value": NEW,
            "addresstype": "ipv4",
            "networkscope": "local-cloud",
            "origin": "provider",
            "spaceid": "0",
        }
    ]
    assert [a["value"] for a in new[m0]["machineaddresses"]] == [NEW, "127.0.0.1", "::1"]
    assert new[m0]["machineaddresses"][0]["origin"] == "machine"
    assert new[m0]["preferredpublicaddress"]["value"] == NEW
    assert new[m0]["preferredprivateaddress"] == {**old[m0]["preferredprivateaddress"], "value": NEW}
    assert new[m0]["jobs"] == old[m0]["jobs"] == [2, 1]


def test_fixture_demotes_machines_1_and_2() -> None:
    new_data, changes = rewrite.rewrite_collection(fixture_dump(rewrite.MACHINES), rewrite.MACHINES, TARGET)
    new = by_id(new_data)
    assert new[f"{MODEL_UUID}:1"]["jobs"] == [1]
    assert new[f"{MODEL_UUID}:2"]["jobs"] == [1]
    demotions = [c.describe() for c in changes if c.field == "jobs"]
    assert demotions == [
        f"juju.machines {MODEL_UUID}:1 jobs: [1, 2] -> [1]",
        f"juju.machines {MODEL_UUID}:2 jobs: [1, 2] -> [1]",
    ]
    assert f"juju.machines {MODEL_UUID}:0 addresses: [{OLD}] -> [{NEW}]" in [c.describe() for c in changes]


def test_rewriting_is_idempotent() -> None:
    once, _ = rewrite.rewrite_collection(fixture_dump(rewrite.MACHINES), rewrite.MACHINES, TARGET)
    twice, changes = rewrite.rewrite_collection(once, rewrite.MACHINES, TARGET)
    assert twice == once and changes == []


def test_unchanged_documents_are_copied_byte_for_byte() -> None:
    other = rewrite.ReaddressTarget("0", NEW, "x", "another-model-uuid")
    data = fixture_dump(rewrite.MACHINES)
    out, changes = rewrite.rewrite_collection(data, rewrite.MACHINES, other)
    assert out == data and changes == []


# --- synthetic 2.x/2.9 collections -------------------------------------------------------------


def hostport(value: str, scope: str = "local-cloud", port: int = 17070) -> dict[str, Any]:
    return {"value": value, "addresstype": "ipv4", "networkscope": scope, "port": port, "spaceid": "0"}


CONTROLLERS_DOCS = [
    {
        "_id": "e",
        "cloud": "lxd",
        "model-uuid": MODEL_UUID,
        "controller-ids": ["0", "1", "2"],
        "txn-revno": Int64(7),
    },
    {
        "_id": "apiHostPorts",
        "apihostports": [
            [hostport("127.0.0.1", "local-machine"), hostport(OLD)],
            [hostport("10.77.116.194")],
            [hostport("10.77.116.222")],
        ],
        "txn-revno": Int64(9),
    },
    {"_id": "apiHostPortsForAgents", "apihostports": [[hostport(OLD)], [hostport("10.77.116.194")]]},
    {"_id": "stateServingInfo", "apiport": 17070, "stateport": 37017, "sharedsecret": "s"},
]


def test_controllers_ids_and_api_host_ports() -> None:
    new, changes = rewrite.rewrite_collection(bson_file(*CONTROLLERS_DOCS), rewrite.CONTROLLERS, TARGET)
    docs = by_id(new)
    assert docs["e"]["controller-ids"] == ["0"]
    assert docs["apiHostPorts"]["apihostports"] == [[hostport(NEW)]]
    assert docs["apiHostPortsForAgents"]["apihostports"] == [[hostport(NEW)]]
    assert without(docs["e"], {"controller-ids"}) == bson.encode(
        {k: v for k, v in CONTROLLERS_DOCS[0].items() if k != "controller-ids"}
    )
    assert docs["stateServingInfo"] == CONTROLLERS_DOCS[3]
    assert [(c.doc_id, c.field) for c in changes] == [
        ("e", "controller-ids"),
        ("apiHostPorts", "apihostports"),
        ("apiHostPortsForAgents", "apihostports"),
    ]
    assert changes[1].describe() == (
        f"juju.controllers apiHostPorts apihostports: [[127.0.0.1:17070, {OLD}:17070], "
        f"[10.77.116.194:17070], [10.77.116.222:17070]] -> [[{NEW}:17070]]"
    )


def test_old_controllers_doc_machineids_and_voting_ids() -> None:
    doc = {"_id": "e", "machineids": ["0", "1"], "votingmachineids": ["0", "1"]}
    new, _ = rewrite.rewrite_collection(bson_file(doc), rewrite.CONTROLLERS, TARGET)
    assert by_id(new)["e"] == {"_id": "e", "machineids": ["0"], "votingmachineids": ["0"]}


def test_controller_nodes_only_the_restored_one_is_left_and_votes() -> None:
    docs = [
        {"_id": i, "has-vote": i != "0", "wants-vote": True, "password-hash": "h",
         "agent-version": {"version": "2.9.42-focal-amd64", "url": "", "size": Int64(0)}}
        for i in ("0", "1", "2")
    ]
    new, changes = rewrite.rewrite_collection(bson_file(*docs), rewrite.CONTROLLER_NODES, TARGET)
    got = by_id(new)
    assert list(got) == ["0"]
    assert (got["0"]["has-vote"], got["0"]["wants-vote"]) == (True, True)
    assert got["0"]["agent-version"] == docs[0]["agent-version"]
    assert [(c.doc_id, c.field) for c in changes] == [
        ("0", "has-vote"), ("1", rewrite.REMOVED), ("2", rewrite.REMOVED)
    ]


def test_ops_on_a_removed_controller_node_are_dropped_from_the_oplog_and_neutered_in_txns() -> None:
    nodes = [{"_id": i, "has-vote": True, "wants-vote": True} for i in ("0", "1")]
    _, changes = rewrite.rewrite_collection(bson_file(*nodes), rewrite.CONTROLLER_NODES, TARGET)
    ops = [
        op("u", "juju.controllerNodes", {"$set": {"has-vote": True}}, {"_id": "1"}),
        op("i", "juju.controllerNodes", {"_id": "1", "has-vote": True}),
        op("u", "juju.controllerNodes", {"$set": {"password-hash": "x"}}, {"_id": "0"}),
    ]
    out = io.BytesIO()
    oplog_changes = rewrite.rewrite_oplog_stream(io.BytesIO(bson_file(*ops)), out, changes)
    kept = bson.decode_all(out.getvalue())
    assert [k["o2"]["_id"] for k in kept] == ["0"]
    assert len(oplog_changes) == 2
    update = {"c": "controllerNodes", "d": "1", "a": {"$exists": True}, "u": {"$set": {"has-vote": True}}}
    pending = txn(1, update)
    out = io.BytesIO()
    rewrite.rewrite_txns_stream(io.BytesIO(bson_file(pending)), out, changes)
    assert bson.decode_all(out.getvalue())[0]["o"] == [{"c": "controllerNodes", "d": "1", "a": "d-"}]


def test_harvest_mode_none_in_every_model_with_the_earlier_value_and_name() -> None:
    docs = [
        {
            "_id": f"{MODEL_UUID}:e",
            "model-uuid": MODEL_UUID,
            "settings": {"name": "controller", "provisioner-harvest-mode": "all"},
            "version": Int64(3),
        },
        {"_id": "other:e", "model-uuid": "other", "settings": {"name": "default"}},
        {
            "_id": "third:e",
            "model-uuid": "third",
            "settings": {"name": "quiet", "provisioner-harvest-mode": "none"},
        },
        {"_id": f"{MODEL_UUID}:r#1", "settings": {"x": 1}},
        {"_id": f"{MODEL_UUID}:a#app", "model-uuid": MODEL_UUID, "settings": {"name": "app-setting"}},
    ]
    new, changes = rewrite.rewrite_collection(bson_file(*docs), rewrite.SETTINGS, TARGET)
    got = by_id(new)
    assert got[f"{MODEL_UUID}:e"]["settings"] == {"name": "controller", "provisioner-harvest-mode": "none"}
    assert got[f"{MODEL_UUID}:e"]["version"] == Int64(3) and isinstance(
        got[f"{MODEL_UUID}:e"]["version"], Int64
    )
    assert got["other:e"]["settings"] == {"name": "default", "provisioner-harvest-mode": "none"}
    assert got["third:e"] == docs[2] and got[f"{MODEL_UUID}:r#1"] == docs[3]
    assert got[f"{MODEL_UUID}:a#app"] == docs[4]
    assert "provisioner-safe-mode" not in new.decode("latin-1")
    assert [c.describe() for c in changes] == [
        f"juju.settings {MODEL_UUID}:e (model controller) settings.provisioner-harvest-mode: all -> none",
        "juju.settings other:e (model default) settings.provisioner-harvest-mode: None -> none",
    ]
    harvest = rewrite.harvest_changes(changes)
    assert [(c.label, c.old) for c in harvest] == [("controller", "all"), ("default", None)]


def test_instance_data_and_old_machine_fields() -> None:
    inst = [
        {"_id": f"{MODEL_UUID}:0", "machineid": "0", "model-uuid": MODEL_UUID, "instanceid": "juju-53ab97-0"},
        {"_id": f"{MODEL_UUID}:1", "machineid": "1", "model-uuid": MODEL_UUID, "instanceid": "juju-53ab97-1"},
    ]
    new, _ = rewrite.rewrite_collection(bson_file(*inst), rewrite.INSTANCE_DATA, TARGET)
    assert [d["instanceid"] for d in bson.decode_all(new)] == ["spare0", "juju-53ab97-1"]
    machines = [
        {
            "_id": "0",
            "machineid": "0",
            "instanceid": "i-0",
            "jobs": [2, 1],
            "hasvote": True,
            "wantsvote": True,
            "addresses": [],
            "machineaddresses": [],
        },
        {"_id": "1", "machineid": "1", "instanceid": "i-1", "jobs": [2], "hasvote": True, "wantsvote": True},
    ]
    new, _ = rewrite.rewrite_collection(bson_file(*machines), rewrite.MACHINES, TARGET)
    m0, m1 = bson.decode_all(new)
    assert (m0["instanceid"], m0["hasvote"], m0["jobs"]) == ("spare0", True, [2, 1])
    assert m0["addresses"] == [
        {"value": NEW, "addresstype": "ipv4", "networkscope": "local-cloud", "origin": "provider"}
    ]
    assert (m1["instanceid"], m1["jobs"], m1["hasvote"], m1["wantsvote"]) == ("i-1", [1], False, False)


def test_unknown_collection_has_no_rule() -> None:
    with pytest.raises(ValueError, match="no re-addressing rule"):
        rewrite.rewrite_collection(b"", "logs/logs.bson", TARGET)


def test_readdress_dump_returns_only_changed_files() -> None:
    files = {
        rewrite.MACHINES: fixture_dump(rewrite.MACHINES),
        rewrite.CONTROLLERS: bson_file(*CONTROLLERS_DOCS),
        rewrite.SETTINGS: bson_file({"_id": "other:e", "settings": {"provisioner-harvest-mode": "none"}}),
        "logs/logs.bson": b"not bson at all",
    }
    result = rewrite.readdress_dump(files, TARGET)
    assert set(result.files) == {rewrite.MACHINES, rewrite.CONTROLLERS}
    assert [c.collection for c in result.changes][:1] == ["juju.machines"]


# --- oplog -------------------------------------------------------------------------------------


def op(kind: str, ns: str, o: dict[str, Any], o2: dict[str, Any] | None = None, n: int = 1) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ts": Timestamp(1_700_000_000, n),
        "t": Int64(1),
        "h": Int64(0),
        "v": 2,
        "op": kind,
        "ns": ns,
    }
    doc["o"] = o
    if o2 is not None:
        doc["o2"] = o2
    return doc


def dump_changes() -> tuple[rewrite.Change, ...]:
    files = {
        rewrite.MACHINES: fixture_dump(rewrite.MACHINES),
        rewrite.SETTINGS: bson_file({"_id": f"{MODEL_UUID}:e", "settings": {"name": "controller"}}),
    }
    return rewrite.readdress_dump(files, TARGET).changes


def run_oplog(ops: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[rewrite.Change], bytes]:
    src = bson_file(*ops)
    out = io.BytesIO()
    changes = rewrite.rewrite_oplog_stream(io.BytesIO(src), out, dump_changes(), TARGET)
    return bson.decode_all(out.getvalue()), changes, out.getvalue()


M0 = {"_id": f"{MODEL_UUID}:0"}
M1 = {"_id": f"{MODEL_UUID}:1"}


def test_oplog_update_of_a_rewritten_field_is_dropped_and_others_kept() -> None:
    ops = [
        op(
            "u",
            "juju.machines",
            {"$v": 1, "$set": {"addresses": [{"value": OLD}], "txn-revno": Int64(98)}},
            M0,
            1,
        ),
        op("u", "juju.machines", {"$set": {"machineaddresses.0.value": OLD}}, M0, 2),
        op("u", "juju.machines", {"$set": {"jobs": [1, 2]}, "$inc": {"txn-revno": 1}}, M1, 3),
        op("u", "juju.models", {"$set": {"life": 1}}, {"_id": MODEL_UUID}, 4),
    ]
    got, changes, raw = run_oplog(ops)
    assert got[0]["o"] == {"$v": 1, "$set": {"txn-revno": Int64(98)}}
    assert got[1]["o"] == {"$inc": {"txn-revno": 1}} and got[1]["o2"] == M1  # op 2 dropped entirely
    assert got[2] == ops[3]
    assert raw.endswith(bson.encode(ops[3]))  # ops on other docs pass byte for byte
    assert [c.field for c in changes] == [
        "op #0 $set addresses",
        "op #1 $set machineaddresses.0.value",
        "op #1 update",
        "op #2 $set jobs",
    ]


def test_oplog_insert_and_replacement_get_the_rewritten_values() -> None:
    settings_id = f"{MODEL_UUID}:e"
    ops = [
        op(
            "i",
            "juju.settings",
            {"_id": settings_id, "settings": {"name": "controller", "provisioner-harvest-mode": "all"}},
        ),
        op("u", "juju.machines", {"_id": M1["_id"], "jobs": [1, 2], "life": 0}, M1),
        op("u", "juju.settings", {"$set": {"settings": {"name": "c2"}}}, {"_id": settings_id}),
    ]
    got, changes, _ = run_oplog(ops)
    assert got[0]["o"]["settings"] == {"name": "controller", "provisioner-harvest-mode": "none"}
    assert got[1]["o"] == {"_id": M1["_id"], "jobs": [1], "life": 0}
    assert got[2]["o"] == {"$set": {"settings": {"name": "c2", "provisioner-harvest-mode": "none"}}}
    assert len(changes) == 3


def test_oplog_updates_cannot_bring_back_what_the_rules_own_even_unchanged_in_the_dump() -> None:
    files = {
        rewrite.MACHINES: fixture_dump(rewrite.MACHINES),
        rewrite.SETTINGS: bson_file({"_id": f"{MODEL_UUID}:e",
                                     "settings": {"name": "controller", "provisioner-harvest-mode": "none"}}),
    }
    changes = rewrite.readdress_dump(files, TARGET).changes
    assert not [c for c in changes if c.collection == "juju.settings"]  # "none" already: no change
    config = {"_id": f"{MODEL_UUID}:e"}
    ops = [
        op("u", "juju.settings", {"$v": 1, "$set": {"settings.provisioner-harvest-mode": "all"}}, config, 1),
        op("u", "juju.settings", {"$v": 1, "$unset": {"settings.provisioner-harvest-mode": True}}, config, 2),
        # a machine the dump does not hold, made a controller during the dump: demoted
        op("u", "juju.machines", {"$v": 1, "$set": {"jobs": [1, 2], "life": 0}},
           {"_id": f"{MODEL_UUID}:7"}, 3),
        # another controller's node, written only in the oplog: applyOps would upsert it back
        op("u", "juju.controllerNodes", {"$v": 1, "$set": {"has-vote": True}}, {"_id": "5"}, 4),
        op("u", "juju.controllerNodes", {"$v": 1, "$set": {"wants-vote": True}}, {"_id": "5"}, 5),
    ]
    out = io.BytesIO()
    oplog_changes = rewrite.rewrite_oplog_stream(io.BytesIO(bson_file(*ops)), out, changes, TARGET)
    got = bson.decode_all(out.getvalue())
    assert [g["o"] for g in got] == [
        {"$v": 1, "$set": {"settings.provisioner-harvest-mode": "none"}},
        {"$v": 1, "$set": {"settings.provisioner-harvest-mode": "none"}},
        {"$v": 1, "$set": {"life": 0, "jobs": [1]}},
    ]
    assert [c.field for c in oplog_changes] == [
        "op #0 $set settings.provisioner-harvest-mode",
        "op #1 $unset settings.provisioner-harvest-mode",
        "op #2 $set jobs",
        "op #3 update of a removed document",
        "op #4 on a removed document",
    ]


def test_oplog_votes_set_on_machines_without_voting_fields_in_the_dump_cannot_undo_the_rewrite() -> None:
    """The 2.7+ machines documents have no `hasvote`/`wantsvote` (they live in controllerNodes), so
    the rewrite adds none; an update setting them during the dump is judged as the document the
    rules saw: machine 1 (a controller in the dump, demoted there) gets false, the restored machine
    true, and so does a machine made a controller earlier in the oplog."""
    dump = {d["_id"]: d for d in bson.decode_all(fixture_dump(rewrite.MACHINES))}
    assert not {"hasvote", "wantsvote"} & (set(dump[M0["_id"]]) | set(dump[M1["_id"]]))
    m7 = {"_id": f"{MODEL_UUID}:7"}
    ops = [
        op("u", "juju.machines", {"$v": 1, "$set": {"hasvote": True, "wantsvote": True}}, M1, 1),
        op("u", "juju.machines", {"$v": 1, "$set": {"hasvote": False}}, M0, 2),
        op("u", "juju.machines", {"$v": 1, "$set": {"jobs": [1, 2]}}, m7, 3),
        op("u", "juju.machines", {"$v": 1, "$set": {"hasvote": True, "txn-revno": Int64(3)}}, m7, 4),
    ]
    got, changes, _ = run_oplog(ops)
    assert got[0]["o"] == {"$v": 1, "$set": {"hasvote": False, "wantsvote": False}}
    assert got[1]["o"] == {"$v": 1, "$set": {"hasvote": True}}
    assert got[2]["o"] == {"$v": 1, "$set": {"jobs": [1]}}
    assert got[3]["o"] == {"$v": 1, "$set": {"txn-revno": Int64(3), "hasvote": False}}
    assert [c.field for c in changes] == [
        "op #0 $set hasvote", "op #0 $set wantsvote", "op #1 $set hasvote", "op #2 $set jobs",
        "op #3 $set hasvote",
    ]


def test_oplog_diff_format_update_loses_the_rewritten_fields_only() -> None:
    addresses = [{"value": OLD, "addresstype": "ipv4"}]
    ops = [
        op("u", "juju.machines", {"$v": 2, "diff": {"u": {"jobs": [1, 2]}}}, M1, 1),
        op("u", "juju.machines",
           {"$v": 2, "diff": {"u": {"addresses": addresses, "txn-revno": Int64(9)},
                              "d": {"preferredpublicaddress": False},
                              "smachineaddresses": {"a": True, "u0": {"value": OLD}}}}, M0, 2),
        op("u", "juju.settings",
           {"$v": 2,
            "diff": {"ssettings": {"u": {"provisioner-harvest-mode": "all", "logging-config": "x"}}}},
           {"_id": f"{MODEL_UUID}:e"}, 3),
    ]
    got, changes, _ = run_oplog(ops)
    assert [g["ts"] for g in got] == [ops[1]["ts"], ops[2]["ts"]]  # the first had nothing left
    assert got[0]["o"] == {"$v": 2, "diff": {"u": {"txn-revno": Int64(9)}}}
    assert got[1]["o"] == {"$v": 2, "diff": {"ssettings": {"u": {"logging-config": "x"}}}}
    assert [c.field for c in changes] == [
        "op #0 diff u jobs", "op #0 update",
        "op #1 diff u addresses", "op #1 diff d preferredpublicaddress", "op #1 diff smachineaddresses",
        "op #2 diff u settings.provisioner-harvest-mode",
    ]


UI = bson.Binary(b"\x01" * 16, 4)
LSID = {"id": bson.Binary(b"\x02" * 16, 4), "uid": b"\x03" * 32}  # uid: BinData 0, bytes in Python


def txn_entry(ops: list[dict[str, Any]], n: int, **o: Any) -> dict[str, Any]:
    """An r4.4 transaction oplog entry: `applyOps` on admin.$cmd with lsid, txnNumber, prevOpTime
    (op_observer_impl.cpp logOplogEntriesForTransaction); inner ops carry `ui`, no ts."""
    entry = op("c", "admin.$cmd", {"applyOps": ops, **o}, n=n)
    entry.update(lsid=LSID, txnNumber=Int64(7), prevOpTime={"ts": Timestamp(0, 0), "t": Int64(-1)})
    return entry


def inner(kind: str, ns: str, o: dict[str, Any], o2: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"op": kind, "ns": ns, "ui": UI, "o": o}
    if o2 is not None:
        doc["o2"] = o2
    return doc


def test_a_juju_sstxn_transaction_entry_is_rewritten_op_by_op() -> None:
    # juju/mgo v3.0.9 sstxn/sstxn.go applyUpdate: the update plus `$set: {txn-revno: N}`, and the
    # txns.log insert, in one MongoDB transaction: one applyOps entry at commit.
    log = inner("i", "juju.txns.log", {"_id": bson.ObjectId(), "machines": {M0["_id"]: Int64(9)}})
    entry = txn_entry([
        inner("u", "juju.machines",
              {"$v": 1, "$set": {"addresses": [{"value": "10.201.0.250"}], "txn-revno": Int64(9)}}, M0),
        log,
    ], 1)
    got, changes, _ = run_oplog([entry])
    assert {k: v for k, v in got[0].items() if k != "o"} == {k: v for k, v in entry.items() if k != "o"}
    assert got[0]["o"]["applyOps"] == [
        inner("u", "juju.machines", {"$v": 1, "$set": {"txn-revno": Int64(9)}}, M0), log
    ]
    assert [(c.doc_id, c.field) for c in changes] == [
        (f"juju.machines {M0['_id']}", "op #0 applyOps[0] $set addresses")
    ]


def test_partial_prepared_and_nested_applyops_entries_keep_their_shape() -> None:
    node = {"_id": "2", "has-vote": True, "wants-vote": True}
    ops = [
        txn_entry([inner("i", "juju.controllerNodes", node)], 1, partialTxn=True),
        txn_entry([inner("u", "juju.controllerNodes", {"$v": 1, "$set": {"has-vote": False}}, {"_id": "2"}),
                   inner("u", "juju.settings",
                         {"$v": 1, "$set": {"settings.provisioner-harvest-mode": "all"}},
                         {"_id": f"{MODEL_UUID}:e"})], 2, count=Int64(3)),
        txn_entry([inner("i", "juju.machines", {"_id": f"{MODEL_UUID}:5", "jobs": [2, 1]})], 3, prepare=True),
        txn_entry([], 4),
        op("c", "admin.$cmd", {"commitTransaction": 1, "commitTimestamp": Timestamp(1_700_000_000, 3)}, n=5),
        op("c", "admin.$cmd", {"applyOps": [
            inner("c", "admin.$cmd", {"applyOps": [
                inner("i", "juju.instanceData",
                      {"_id": f"{MODEL_UUID}:0", "machineid": "0", "instanceid": "i-9"})
            ]})
        ]}, n=6),
    ]
    got, changes, raw = run_oplog(ops)
    assert len(got) == len(ops)  # no entry goes: a transaction's chain and its commit stay whole
    assert got[0]["o"] == {"applyOps": [], "partialTxn": True}  # the other controller's node: dropped
    assert got[1]["o"] == {"applyOps": [], "count": Int64(3)}  # ... and its later update, and harvest
    assert got[2]["o"]["applyOps"][0]["o"]["jobs"] == [1]  # a controller added in the oplog: demoted
    assert got[2]["o"]["prepare"] is True
    assert got[3:5] == ops[3:5]
    nested = got[5]["o"]["applyOps"][0]["o"]["applyOps"][0]["o"]
    assert nested["instanceid"] == "spare0"  # the restored machine's instanceData, inserted in the oplog
    assert raw.count(bson.encode(ops[4])) == 1  # the commit passes byte for byte
    assert [c.field for c in changes] == [
        "op #0 applyOps[0] insert of a removed document",
        "op #1 applyOps[0] on a removed document",
        "op #1 applyOps[1] $set settings.provisioner-harvest-mode",
        "op #1 applyOps[1] update",
        "op #2 applyOps[0] insert jobs",
        "op #5 applyOps[0] applyOps[0] insert instanceid",
    ]


def test_without_a_target_inserts_get_the_dump_documents_changed_paths() -> None:
    src = bson_file(op("i", "juju.machines", {"_id": M0["_id"], "addresses": []}))
    out = io.BytesIO()
    changes = rewrite.rewrite_oplog_stream(io.BytesIO(src), out, dump_changes())
    assert [a["value"] for a in bson.decode_all(out.getvalue())[0]["o"]["addresses"]] == [NEW]
    assert [c.field for c in changes] == ["op #0 insert"]


def test_oplog_without_rewrites_is_copied_unchanged() -> None:
    src = bson_file(op("u", "juju.machines", {"$set": {"addresses": []}}, M0))
    out = io.BytesIO()
    assert rewrite.rewrite_oplog_stream(io.BytesIO(src), out, []) == []
    assert out.getvalue() == src


# --- the whole archive -------------------------------------------------------------------------


def test_readdress_fixture_archive(tmp_path: Path) -> None:
    dst = tmp_path / "readdressed.tar.gz"
    result = rewrite.readdress_archive(str(VALID), str(dst), TARGET)
    report = archive.verify_archive(dst)
    assert report.ok, [c.message for c in report.failures]
    assert report.metadata and report.metadata.ha_nodes == 1  # machines 1 and 2 no longer manage the model
    got = archive.read_members(dst, ["dump/juju/machines.bson", "dump/juju/models.bson"], [CONF_NAME])
    assert f"- {NEW}:17070\n" in got.root_files[CONF_NAME].decode()
    assert got.files["dump/juju/models.bson"] == fixture_dump("juju/models.bson")
    machines = by_id(got.files["dump/juju/machines.bson"])
    assert machines[f"{MODEL_UUID}:0"]["addresses"][0]["value"] == NEW
    described = [c.describe() for c in result.changes]
    assert described[0].startswith(f"agent.conf {CONF_NAME} apiaddresses: ")
    assert f"juju.machines {MODEL_UUID}:1 jobs: [1, 2] -> [1]" in described
    assert f"-- {OLD}:17070" in result.agent_conf_diff
    assert set(result.missing) == {
        rewrite.INSTANCE_DATA,
        rewrite.CONTROLLERS,
        rewrite.CONTROLLER_NODES,
        rewrite.SETTINGS,
    }
    # root.tar: only agent.conf changed; the tools symlink is kept
    before = {m.path: m for m in archive.verify_archive(VALID).root_members}
    after = {m.path: m for m in report.root_members}
    assert before.keys() == after.keys()
    assert [p for p in before if before[p] != after[p]] == [CONF_NAME]


def test_readdress_never_decodes_files_it_does_not_rewrite(tmp_path: Path) -> None:
    """A logs file that is not even BSON passes through untouched: only the rewritten files are read."""
    from tests.unit.archive_builders import ArchiveSpec

    spec = ArchiveSpec(with_manifest=False)
    spec.dump["logs/logs.1.bson"] = b"\xff" * 1000
    spec.dump["oplog.bson"] = bson_file(op("u", "juju.machines", {"$set": {"addresses": []}}, M0))
    src = spec.write(tmp_path / "src.tar.gz")
    dst = tmp_path / "dst.tar.gz"
    result = rewrite.readdress_archive(str(src), str(dst), TARGET)
    got = archive.read_members(dst, ["dump/logs/logs.1.bson", "dump/oplog.bson"]).files
    assert got["dump/logs/logs.1.bson"] == b"\xff" * 1000
    assert bson.decode_all(got["dump/oplog.bson"]) == []
    assert [c.field for c in result.changes if c.collection == "oplog"] == [
        "op #0 $set addresses",
        "op #0 update",
    ]
    with tarfile.open(dst) as tar:
        assert tar.getmember("juju-backup/dump/logs/logs.1.bson").size == 1000


def test_readdress_of_another_machine_is_refused_and_leaves_no_output(tmp_path: Path) -> None:
    from jujubackup.errors import VerifyError

    dst = tmp_path / "out.tar.gz"
    with pytest.raises(VerifyError, match=r"no var/lib/juju/agents/machine-5/agent\.conf"):
        rewrite.readdress_archive(VALID, dst, rewrite.ReaddressTarget("5", NEW, "x", MODEL_UUID))
    assert not dst.exists()


def unpack_all(archive_path: Path, dest: Path, *, overlay: Path | None = None) -> dict[str, bytes]:
    """Unpack an archive (then an overlay) like the restore does; return {path: content} of the
    staging dir's files plus root.tar (then root-overlay.tar) extracted into dest/root."""
    staging = dest / "staging"
    staging.mkdir(parents=True)
    for path in (archive_path, overlay):
        if path is not None:
            with tarfile.open(path, "r|gz") as tar:
                archive.safe_extract(tar, staging)
    root = dest / "root"
    root.mkdir()
    for name in ("root.tar", "root-overlay.tar"):
        tar_path = staging / "juju-backup" / name
        if tar_path.exists():
            with tarfile.open(tar_path, "r|") as tar:
                archive.safe_extract(tar, root)
            tar_path.unlink()
    return {
        str(p.relative_to(dest)): p.read_bytes()
        for p in sorted(dest.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_overlay_over_the_original_equals_the_full_readdressed_copy(tmp_path: Path) -> None:
    from tests.unit.archive_builders import ArchiveSpec

    spec = ArchiveSpec(with_manifest=False)
    spec.dump["oplog.bson"] = bson_file(
        op("u", "juju.machines", {"$set": {"addresses": [], "life": 1}}, M0),
        op("u", "juju.models", {"$set": {"life": 1}}, {"_id": MODEL_UUID}),
    )
    spec.dump["logs/logs.1.bson"] = bson_file({"_id": 1, "x": "log"})
    spec.dump["juju/txns.bson"] = bson_file(
        txn(2, {"c": "machines", "d": M0["_id"], "u": {"$set": {"addresses": []}}})
    )
    src = spec.write(tmp_path / "src.tar.gz")
    full = rewrite.readdress_archive(src, tmp_path / "full.tar.gz", TARGET)
    assert [c.collection for c in full.changes].count("juju.txns") == 1
    over = rewrite.readdress_archive(src, tmp_path / "overlay.tar.gz", TARGET, overlay=True)
    assert [c.describe() for c in over.changes] == [c.describe() for c in full.changes]
    with tarfile.open(tmp_path / "overlay.tar.gz") as tar:
        assert tar.getnames() == [
            "juju-backup/root-overlay.tar",
            "juju-backup/dump/juju/machines.bson",
            "juju-backup/dump/oplog.bson",
            "juju-backup/dump/juju/txns.bson",
        ]
    via_overlay = unpack_all(src, tmp_path / "a", overlay=tmp_path / "overlay.tar.gz")
    via_full = unpack_all(tmp_path / "full.tar.gz", tmp_path / "b")
    assert via_overlay == via_full
    assert f"- {NEW}:17070".encode() in via_full[f"root/{CONF_NAME}"]


def test_the_overlay_of_a_slim_copy_is_the_overlay_of_the_whole_archive(tmp_path: Path) -> None:
    """restore reads the archive once (archive.slim_copy of gather.SLIM_MEMBERS) and writes its
    re-addressing overlay from that copy: byte for byte the overlay of the whole archive."""
    from jujubackup.restore.gather import SLIM_MEMBERS, read_backup
    from tests.unit.archive_builders import ArchiveSpec

    spec = ArchiveSpec()
    spec.dump["oplog.bson"] = bson_file(op("u", "juju.machines", {"$set": {"addresses": []}}, M0))
    spec.dump["logs/logs.1.bson"] = bson_file({"_id": 1, "x": "log"})
    spec.dump["juju/txns.bson"] = bson_file(
        txn(2, {"c": "machines", "d": M0["_id"], "u": {"$set": {"addresses": []}}})
    )
    src = spec.write(tmp_path / "src.tar.gz")
    slim = tmp_path / "slim.tar.gz"
    archive.slim_copy(src, slim, SLIM_MEMBERS)
    with tarfile.open(slim) as tar:
        names = tar.getnames()
    assert "juju-backup/dump/logs/logs.1.bson" not in names
    assert {"juju-backup/root.tar", "juju-backup/dump/juju/machines.bson", "juju-backup/dump/oplog.bson",
            "juju-backup/dump/juju/txns.bson", "juju-backup/metadata.json"} <= set(names)
    assert slim.stat().st_mode & 0o777 == 0o600
    whole = rewrite.readdress_archive(src, tmp_path / "a.tar.gz", TARGET, overlay=True)
    from_slim = rewrite.readdress_archive(slim, tmp_path / "b.tar.gz", TARGET, overlay=True)
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert [c.describe() for c in from_slim.changes] == [c.describe() for c in whole.changes]
    facts = read_backup(src, "x", members=slim)
    assert facts == read_backup(src, "x")
    assert facts.archive_size == src.stat().st_size


def test_a_slim_copy_of_a_truncated_archive_is_refused_and_left_nowhere(tmp_path: Path) -> None:
    from tests.unit.archive_builders import ArchiveSpec

    src = ArchiveSpec().write(tmp_path / "src.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(VerifyError, match="truncated or corrupt"):
        archive.slim_copy(cut, tmp_path / "slim.tar.gz", {"root.tar"})
    assert not (tmp_path / "slim.tar.gz").exists()


def test_rewritten_documents_keep_every_bson_type() -> None:
    """Values Python cannot hold natively (out-of-range dates, int64, binary subtypes, timestamps)
    survive the decode/encode of a rewritten document type-exactly."""
    from bson.binary import Binary
    from bson.datetime_ms import DatetimeMS
    from bson.objectid import ObjectId

    odd = {
        "old-date": DatetimeMS(-70_000_000_000_000),
        "revno": Int64(5),
        "small": 5,
        "uuid": Binary(b"\x01" * 16, 4),
        "blob": b"\x00\x01",
        "ts": Timestamp(1, 2),
        "oid": ObjectId("5e5e4efdf96d3f00f1a5a8a0"),
        "f": 1.5,
        "none": None,
    }
    doc = {"_id": f"{MODEL_UUID}:0", "machineid": "0", "jobs": [2], "addresses": [], **odd}
    new, changes = rewrite.rewrite_collection(bson_file(doc), rewrite.MACHINES, TARGET)
    assert {c.field for c in changes} == {
        "addresses",
        "machineaddresses",
        "preferredpublicaddress",
        "preferredprivateaddress",
    }
    fields = {c.field for c in changes}
    decoded = bson.decode(new, archive.BSON_CODEC)
    assert without(decoded, fields) == without(doc, fields)


# --- mgo/txn transactions ----------------------------------------------------------------------


def txn(state: int, *ops: dict[str, Any], tid: str = "5e5e4efdf96d3f00f1a5a8a0") -> dict[str, Any]:
    from bson.objectid import ObjectId

    return {"_id": ObjectId(tid), "s": state, "o": list(ops), "n": "abcd1234"}


def run_txns(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[rewrite.Change], bytes]:
    out = io.BytesIO()
    changes = rewrite.rewrite_txns_stream(io.BytesIO(bson_file(*docs)), out, dump_changes())
    return bson.decode_all(out.getvalue()), changes, out.getvalue()


def test_pending_transactions_cannot_reapply_old_values() -> None:
    m0, m1 = M0["_id"], M1["_id"]
    pending = txn(
        2,
        {"c": "machines", "d": m0, "a": {"life": 0}, "u": {"$set": {"addresses": [], "nonce": "x"}}},
        {"c": "machines", "d": m1, "u": {"$set": {"jobs": [1, 2]}}},
        {"c": "models", "d": MODEL_UUID, "u": {"$set": {"life": 1}}},
    )
    got, changes, _ = run_txns([pending])
    ops = got[0]["o"]
    assert ops[0]["u"] == {"$set": {"nonce": "x"}} and ops[0]["a"] == {"life": 0}
    assert ops[1]["u"] == {}  # the transaction still completes, without re-promoting machine 1
    assert ops[2] == pending["o"][2]
    assert [c.field for c in changes] == [
        f"op #0 machines {m0} $set addresses",
        f"op #1 machines {m1} $set jobs",
    ]
    assert {c.collection for c in changes} == {"juju.txns"}


def test_applied_and_unrelated_transactions_are_copied_byte_for_byte() -> None:
    applied = txn(6, {"c": "machines", "d": M0["_id"], "u": {"$set": {"addresses": []}}})
    other = txn(2, {"c": "machines", "d": f"{MODEL_UUID}:9", "u": {"$set": {"addresses": []}}})
    _got, changes, raw = run_txns([applied, other])
    assert changes == [] and raw == bson_file(applied, other)


def test_pending_insert_gets_the_rewritten_values() -> None:
    settings_id = f"{MODEL_UUID}:e"
    ins = txn(1, {"c": "settings", "d": settings_id, "i": {"settings": {"provisioner-harvest-mode": "all"}}})
    got, changes, _ = run_txns([ins])
    assert got[0]["o"][0]["i"] == {"settings": {"provisioner-harvest-mode": "none"}}
    assert changes[0].field == f"op #0 settings {settings_id} insert"
