"""repoint.py (pure): the restored controller's listing is hostile input; what it yields."""

from __future__ import annotations

from typing import Any

import pytest

from jujubackup import repoint as R
from jujubackup.errors import RemoteStepError

CM = "11111111-2222-3333-4444-555555555555"  # controller model
DM = "66666666-7777-8888-9999-aaaaaaaaaaaa"  # hosted model
KM = "bbbbbbbb-cccc-dddd-eeee-ffffffffffff"  # a Kubernetes model


def reply(docs: list[dict[str, Any]], cursor_id: Any = 0) -> dict[str, Any]:
    return {"cursor": {"firstBatch": docs, "id": cursor_id, "ns": "juju.x"}, "ok": 1}


def addr(value: str, scope: str = "local-cloud") -> dict[str, Any]:
    return {"value": value, "addresstype": "ipv4", "networkscope": scope}


def machine(model: str, mid: str, ip: str | None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": f"{model}:{mid}", "model-uuid": model, "machineid": mid, "life": 0,
                           "jobs": [1], "addresses": [addr(ip)] if ip else []}
    if ip:
        doc["preferredpublicaddress"] = addr(ip)
    doc.update(extra)
    return doc


def listing(
    machines: list[dict[str, Any]], hostports: list[list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    hp = hostports if hostports is not None else [[
        {**addr("10.0.0.9"), "port": 17070},
        {**addr("127.0.0.1", "local-machine"), "port": 17070},
        {**addr("::1", "local-machine"), "port": 17070},
    ]]
    return {
        "controller_tag": "controller-" + CM.replace("1", "c"),
        "models": reply([{"_id": CM, "name": "controller", "type": "iaas"},
                         {"_id": DM, "name": "default", "type": "iaas"},
                         {"_id": KM, "name": "k8s", "type": "caas"}]),
        "machines": reply(machines),
        "hostports": reply([{"_id": "apiHostPortsForAgents", "apihostports": hp}]),
        "controller": reply([{"_id": "e", "model-uuid": CM, "controller-ids": ["0"]}]),
    }


def test_machines_of_every_model_but_controllers_and_dead_ones() -> None:
    inv = R.parse_listing(listing([
        machine(CM, "0", "10.0.0.9", jobs=[2, 1]),           # the controller
        machine(CM, "1", "10.0.0.11"),
        machine(DM, "0", "10.0.0.12"),                        # machine 0 of another model
        machine(DM, "0/lxd/3", "10.0.3.7"),                   # a container is a machine too
        machine(DM, "2", "10.0.0.13", life=2),                # dead
        machine(DM, "3", "10.0.0.14", life=1),                # dying: its agent still runs (restore.go)
        machine(KM, "0", "10.1.0.5"),
    ]))
    got = [(m.model_name, m.machine_id, m.address, m.problem) for m in inv.machines]
    assert got == [
        ("controller", "1", "10.0.0.11", ""),
        ("default", "0", "10.0.0.12", ""),
        ("default", "0/lxd/3", "10.0.3.7", ""),
        ("default", "3", "10.0.0.14", ""),
        ("k8s", "0", "10.1.0.5", "Kubernetes model: its agents run in pods, not reachable over SSH"),
    ]
    assert inv.api_addresses == ("10.0.0.9:17070",)  # machine-local ones are unusable elsewhere
    assert inv.controller_uuid == CM.replace("1", "c") and inv.rejected == ()


def test_hostile_records_are_rejected_not_used() -> None:
    inv = R.parse_listing(listing([
        machine(DM, "1; rm -rf /", "10.0.0.20"),
        machine("../../etc", "1", "10.0.0.21"),
        machine(DM, "5", "-oProxyCommand=touch /tmp/x"),
        machine(DM, "6", "10.0.0.22", preferredpublicaddress=addr("evil host")),
        machine(DM, "7", None),
    ]))
    assert len(inv.rejected) == 2
    by_id = {m.machine_id: m for m in inv.machines}
    assert by_id["5"].address == "" and by_id["5"].problem == "no usable address in the database"
    assert by_id["6"].address == "10.0.0.22"  # the invalid preferred address is passed over
    assert by_id["7"].problem == "no usable address in the database"


def test_address_preference_public_first_and_never_loopback() -> None:
    doc = {"addresses": [addr("127.0.0.1", "local-machine"), addr("10.0.0.5"), addr("203.0.113.9", "public"),
                         addr("169.254.1.1", "link-local")]}
    assert R.select_address(doc) == "203.0.113.9"
    assert R.select_address({"addresses": [addr("127.0.0.1", "")]}) is None


def test_ipv6_api_addresses_are_bracketed_and_deduplicated() -> None:
    hp = [[{**addr("fd00::9"), "port": 17070}, {**addr("fd00::9"), "port": 17070}],
          [{**addr("10.0.0.9"), "port": {"$numberLong": "17070"}}]]
    assert R.agent_addresses(listing([], hp)["hostports"]) == ("[fd00::9]:17070", "10.0.0.9:17070")


@pytest.mark.parametrize("bad", [
    {"models": {"ok": 0, "errmsg": "not authorized"}},
    {"machines": reply([], cursor_id={"$numberLong": "12345"})},   # would need a getMore
    {"hostports": reply([{"_id": "apiHostPortsForAgents", "apihostports": [[
        {**addr("127.0.0.1", "local-machine"), "port": 17070}]]}])},
])
def test_an_unusable_listing_is_an_error(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        R.parse_listing({**listing([machine(DM, "1", "10.0.0.2")]), **bad})


def test_machine_report_is_validated() -> None:
    good = {"dry_run": False, "diff": "", "agents": [
        {"tag": "machine-1", "changed": True, "restarted": True, "state": "connected",
         "address": "10.0.0.9:17070", "error": ""}]}
    assert R.parse_machine_report(good, "m").connected
    for agent in ({"tag": "../../x", "changed": True, "restarted": True, "state": "connected"},
                  {"tag": "machine-1", "changed": "yes", "restarted": True, "state": "connected"},
                  {"tag": "machine-1", "changed": True, "restarted": True, "state": "happy"}):
        with pytest.raises(RemoteStepError):
            R.parse_machine_report({"agents": [agent]}, "m")


def test_by_hand_command_names_the_machine_and_addresses_only() -> None:
    m = R.Machine(DM, "default", "2", "10.0.0.12")
    cmd = R.by_hand(m, ["10.0.0.9:17070", "[fd00::9]:17070"], via="root@ctl")
    assert cmd.startswith("ssh -J root@ctl ubuntu@10.0.0.12 ")
    assert "- 10.0.0.9:17070\\n- [fd00::9]:17070" in cmd and "/var/lib/juju/agents/*/agent.conf" in cmd
    assert R.by_hand(R.Machine(DM, "default", "3", ""), ["10.0.0.9:17070"]) == ""


def test_trailing_newlines_scoped_addresses_and_odd_digits_are_rejected() -> None:
    # `^...$` with re.match lets "1\n" through (`$` matches before a final newline): a machine id,
    # model uuid or address with a newline would reach the by-hand command and the state file
    inv = R.parse_listing(listing([
        machine(DM, "1\n", "10.0.0.20"),
        machine(DM + "\n", "2", "10.0.0.21"),
        machine(DM, "0/lxd/" + "1/lxd/" * 60 + "1", "10.0.0.22"),     # no machine Juju made
        machine(DM, "3", None, addresses=[addr("fe80::1%$(touch /tmp/x)")]),
        machine(DM, "4", None, addresses=[addr("host.example\n")]),
        machine(DM, "5", "10.0.0.25"),
    ], [[{**addr("10.0.0.9"), "port": {"$numberLong": "1707\u00b2"}},   # '²'.isdigit() is True
         {**addr("10.0.0.9"), "port": 17070}]]))
    assert len(inv.rejected) == 3
    by_id = {m.machine_id: m for m in inv.machines}
    assert sorted(by_id) == ["3", "4", "5"]
    assert by_id["3"].address == by_id["4"].address == "" and by_id["5"].address == "10.0.0.25"
    assert inv.api_addresses == ("10.0.0.9:17070",)
    with pytest.raises(RemoteStepError):
        R.parse_machine_report({"agents": [{"tag": "machine-1\n", "changed": True, "restarted": True,
                                            "state": "connected"}]}, "m")



class _ListingHost:
    """A controller whose repoint-list prints `doc` (nothing else may be run on it)."""

    name = "spare0"

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def run(self, script: str, text: str, **_: Any) -> Any:
        import json

        from jujubackup.host.base import RemoteResult

        assert script == "repoint-list", script
        return RemoteResult(script, json.dumps(self.doc), "")


def test_controllers_demoted_by_the_restore_are_listed_not_repointed(tmp_path: Any) -> None:
    # after an HA restore the old controllers 1 and 2 have jobs [1] and are no longer in
    # controller-ids: by the database alone they look like workload machines
    import io

    from rich.console import Console

    from jujubackup.operations.repoint import RepointRequest, repoint_from
    from jujubackup.ui import UI
    from tests.fakehost import FakeConnector

    doc = listing([machine(CM, "1", "10.0.0.11"), machine(CM, "2", "10.0.0.12"), machine(DM, "2", None)])
    ui = UI(quiet=True, out=Console(file=io.StringIO()), err=Console(file=io.StringIO()))
    request = RepointRequest(target="spare0", state_dir=tmp_path, demoted=("1", "2"))
    result = repoint_from(FakeConnector({}), _ListingHost(doc), request, ui)  # type: ignore[arg-type]
    got = {(o.machine.model_name, o.machine.machine_id): (o.result, o.why) for o in result.outcomes}
    assert got[("controller", "1")][0] == got[("controller", "2")][0] == "skipped"
    assert "demoted by the restore" in got[("controller", "1")][1]
    assert got[("default", "2")] == ("skipped", "no usable address in the database")  # not a demoted one
    assert result.left == []
    # a later `repoint` (same workstation) knows them from the state file the restore's run wrote
    later = RepointRequest(target="spare0", state_dir=tmp_path)
    again = repoint_from(FakeConnector({}), _ListingHost(doc), later, ui)  # type: ignore[arg-type]
    assert [o.result for o in again.outcomes if o.machine.model_uuid == CM] == ["skipped", "skipped"]


def test_a_workstation_without_the_state_file_knows_the_demoted_controllers_from_the_restore_record(
    tmp_path: Any,
) -> None:
    # the restore left its record on the controller (repoint.RESTORE_RECORD); repoint-list passes it
    # on as a string: a repoint from anywhere (no state file, no `demoted` asked) skips machines 1, 2
    import io

    from rich.console import Console

    from jujubackup.operations.repoint import RepointRequest, repoint_from
    from jujubackup.ui import UI
    from tests.fakehost import FakeConnector

    uuid = CM.replace("1", "c")
    doc = listing([machine(CM, "1", "10.0.0.11"), machine(CM, "2", "10.0.0.12"), machine(DM, "3", None)])
    doc["restore_record"] = R.restore_record(uuid, "0", ["2", "1"])
    assert R.parse_listing(doc).demoted == ("1", "2")
    ui = UI(quiet=True, out=Console(file=io.StringIO()), err=Console(file=io.StringIO()))
    request = RepointRequest(target="spare0", state_dir=tmp_path)
    result = repoint_from(FakeConnector({}), _ListingHost(doc), request, ui)  # type: ignore[arg-type]
    got = {(o.machine.model_name, o.machine.machine_id): (o.result, o.why) for o in result.outcomes}
    assert got[("controller", "1")][0] == got[("controller", "2")][0] == "skipped"
    assert "demoted by the restore" in got[("controller", "2")][1]
    assert result.left == []


@pytest.mark.parametrize(("record", "problem"), [
    ('{"controller-uuid": "OTHER", "demoted": ["1"]}', "written for another controller"),
    ("not json", "not JSON"),
    ('{"controller-uuid": "UUID", "demoted": ["1/lxd/0"]}', "an invalid machine id"),
    ('{"controller-uuid": "UUID", "demoted": ["1; rm -rf /"]}', "an invalid machine id"),
    ('{"controller-uuid": "UUID", "demoted": "1"}', "not a record of demoted machines"),
    ("", ""),
])
def test_a_restore_record_that_does_not_validate_demotes_nothing(record: str, problem: str) -> None:
    uuid = CM.replace("1", "c")
    doc = listing([machine(CM, "1", "10.0.0.11")])
    doc["restore_record"] = record.replace("UUID", uuid)
    inv = R.parse_listing(doc)
    assert inv.demoted == ()
    assert [r for r in inv.rejected if r.startswith("restore record")] == (
        [f"restore record: {problem}"] if problem else [])
