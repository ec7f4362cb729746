"""restore/plan.py: facts + options -> ordered steps or a typed refusal (pure, no SSH)."""

from __future__ import annotations

import dataclasses
import io
import tarfile

import bson
import pytest
from ruamel.yaml import YAML

from jujubackup import rewrite
from jujubackup.errors import EXIT_REFUSED, RefusedError
from jujubackup.metadata import parse_metadata_json
from jujubackup.restore import plan as P
from jujubackup.restore.backupfacts import backup_facts, peer_endpoints
from tests.paths import FIXTURES_28

FIXTURES = FIXTURES_28
GiB = 2**30


def fixture_backup(name: str = "valid-backup.tar.gz") -> P.BackupFacts:
    """Read the real Juju 2.8 fixture (metadata, agent.conf, machines.bson) into BackupFacts."""
    path = FIXTURES / name
    with tarfile.open(path) as outer:
        meta = parse_metadata_json(_read(outer, "juju-backup/metadata.json"))
        machines = bson.decode_all(_read(outer, "juju-backup/dump/juju/machines.bson"))
        with tarfile.open(fileobj=io.BytesIO(_read(outer, "juju-backup/root.tar"))) as root:
            conf = YAML(typ="safe").load(_read(root, "var/lib/juju/agents/machine-0/agent.conf"))
        unpacked = sum(m.size for m in outer.getmembers())
        has_oplog = "juju-backup/dump/oplog.bson" in outer.getnames()
    return backup_facts(
        meta, conf, machines, backup_id="fixture", archive_size=path.stat().st_size,
        unpacked_size=unpacked, has_oplog=has_oplog,
    )


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None
    return member.read()


def spare(**kw: object) -> P.TargetFacts:
    values: dict[str, object] = dict(
        name="spare0", address="10.201.0.50", profile="juju-2.8", mongo_version="3.6.8",
        free_bytes=20 * GiB, addresses=("10.201.0.50",),
    )
    values.update(kw)
    return P.TargetFacts(**values)  # type: ignore[arg-type]


DR = P.RestoreOptions(mode=P.Mode.dr)


def test_fixture_facts_name_the_three_controllers_and_machine_0() -> None:
    backup = fixture_backup()
    assert backup.machine_id == "0"
    assert backup.controller_uuid == "8a293c6a-855b-47fd-8201-affdf29c9605"
    assert backup.model_uuid == "e2a6a1e5-abea-4393-8593-5a45ae53ab97"
    assert backup.juju_version == "2.8-beta1.1"
    assert backup.mongo_version == "3.6.3/wiredTiger"
    assert [(c.machine_id, c.addresses) for c in backup.controllers] == [
        ("0", ("10.77.116.68",)), ("1", ("10.77.116.194",)), ("2", ("10.77.116.222",)),
    ]


def test_dr_plan_of_the_fixture_shows_old_and_new_address_and_demotions() -> None:
    backup = fixture_backup()
    plan = P.make_plan(backup, spare(mongo_version="3.6.8"), DR,
                       changes=["juju.machines 0: addresses 10.77.116.68 -> 10.201.0.50"])
    assert plan.old_addresses == ("10.77.116.68",)
    assert plan.new_address == "10.201.0.50"
    assert [d.split(" (")[0] for d in plan.demoted] == ["machine 1", "machine 2"]
    assert "10.77.116.194" in plan.demoted[0] and "10.77.116.222" in plan.demoted[1]
    assert plan.step_names() == (
        P.UPLOAD, P.STOP, P.UNTAR, P.INSTALL, P.FRESH_DB, P.LOAD_DB, P.START, P.VERIFY, P.CLEANUP,
    )
    assert plan.changes == ("juju.machines 0: addresses 10.77.116.68 -> 10.201.0.50",)
    assert not plan.snapshot


def test_target_with_state_gets_a_snapshot_and_keeps_its_units() -> None:
    backup = fixture_backup()
    target = spare(juju_version="2.8-beta1.1", machine_id="0", controller_uuid=backup.controller_uuid,
                   live_services=("juju-db", "jujud-machine-0"), has_state=True, mongo_version="3.6.3")
    plan = P.make_plan(backup, target, P.RestoreOptions(mode=P.Mode.same))
    assert P.SNAPSHOT in plan.step_names() and P.INSTALL not in plan.step_names()
    assert plan.step_names().index(P.STOP) < plan.step_names().index(P.SNAPSHOT) < plan.step_names().index(
        P.UNTAR)


def test_peers_to_probe_are_the_old_controllers_on_both_ports_not_the_target() -> None:
    backup = fixture_backup()
    endpoints = peer_endpoints(backup, spare(address="10.77.116.68", addresses=("10.77.116.68",)))
    assert endpoints == [
        ("10.77.116.194", 17070), ("10.77.116.194", 37017),
        ("10.77.116.222", 17070), ("10.77.116.222", 37017),
    ]


def test_a_live_old_controller_refuses_with_exit_6_and_force_overrides() -> None:
    backup = fixture_backup()
    peers = [P.PeerProbe("10.77.116.194", 17070, True), P.PeerProbe("10.77.116.222", 17070, False)]
    with pytest.raises(RefusedError) as err:
        P.make_plan(backup, spare(), DR, peers=peers)
    assert err.value.exit_code == EXIT_REFUSED
    assert "10.77.116.194:17070" in err.value.message and "10.77.116.222" not in err.value.message
    assert err.value.hint and "--force" in err.value.hint
    plan = P.make_plan(backup, spare(), P.RestoreOptions(mode=P.Mode.dr, force=True), peers=peers)
    assert any("10.77.116.194:17070" in w for w in plan.warnings)


def test_not_enough_disk_refuses() -> None:
    backup = fixture_backup()
    with pytest.raises(RefusedError, match="not enough disk"):
        P.make_plan(backup, spare(free_bytes=1000), DR)


def test_newer_backup_than_target_refuses_even_with_force() -> None:
    backup = fixture_backup()
    target = spare(juju_version="2.7.6")
    with pytest.raises(RefusedError, match="newer"):
        P.make_plan(backup, target, P.RestoreOptions(mode=P.Mode.move, force=True))


def test_older_backup_needs_allow_downgrade() -> None:
    backup = fixture_backup()
    target = spare(juju_version="2.8.10")
    with pytest.raises(RefusedError, match="older") as err:
        P.make_plan(backup, target, P.RestoreOptions(mode=P.Mode.move))
    assert err.value.hint and "--allow-downgrade" in err.value.hint
    plan = P.make_plan(backup, target, P.RestoreOptions(mode=P.Mode.move, allow_downgrade=True))
    assert plan.steps


def test_mongo_major_minor_mismatch_refuses() -> None:
    backup = fixture_backup()
    with pytest.raises(RefusedError, match="mongo"):
        P.make_plan(backup, spare(mongo_version="4.4.18"), DR)


def test_live_controller_of_another_uuid_refuses() -> None:
    backup = fixture_backup()
    target = spare(live_services=("juju-db",), controller_uuid="11111111-2222-3333-4444-555555555555",
                   juju_version="2.8-beta1.1", has_state=True)
    with pytest.raises(RefusedError, match="another controller"):
        P.make_plan(backup, target, DR)


def test_target_without_mongo_tools_refuses_even_with_force() -> None:
    backup = fixture_backup()
    with pytest.raises(RefusedError, match="no mongo tools"):
        P.make_plan(backup, spare(profile=None), P.RestoreOptions(mode=P.Mode.dr, force=True))


def test_without_readdressing_the_plan_says_so_and_has_no_changes() -> None:
    backup = fixture_backup()
    options = P.RestoreOptions(mode=P.Mode.dr, readdress=False)
    plan = P.make_plan(backup, spare(mongo_version="3.6.3"), options, changes=["x"])
    assert plan.changes == ()
    assert "NOT re-addressed" in plan.steps[0].title


@pytest.mark.parametrize(("text", "expected"), [
    ("2.9.42", (2, 9, 42)), ("2.8-beta1.1", (2, 8, 0)), ("3.6.3/wiredTiger", (3, 6, 3)), ("4.4", (4, 4, 0)),
])
def test_version_tuple(text: str, expected: tuple[int, int, int]) -> None:
    assert P.version_tuple(text) == expected


def test_a_dry_run_plan_lists_refusals_instead_of_raising() -> None:
    backup = fixture_backup()
    peers = [P.PeerProbe("10.77.116.194", 17070, True)]
    plan = P.make_plan(backup, spare(mongo_version="3.2.22"), DR, peers=peers, check=False)
    refused = [w for w in plan.warnings if w.startswith("refused: ")]
    assert len(refused) == 2
    assert plan.demoted and plan.new_address == "10.201.0.50"


def test_plan_and_rewrite_agree_on_which_machines_are_controllers() -> None:
    """One rule (rewrite.is_controller_machine): the machines the plan says it demotes are exactly
    the machines the re-addressing demotes, on the fixture's machines.bson plus the awkward cases
    (a manager job in another model, a 1.x document keyed by env-uuid, a machine without jobs)."""
    with tarfile.open(FIXTURES / "valid-backup.tar.gz") as outer:
        machines = bson.decode_all(_read(outer, "juju-backup/dump/juju/machines.bson"))
    model = fixture_backup().model_uuid
    machines += [
        {"_id": "other-model:0", "machineid": "0", "model-uuid": "other-model", "jobs": [2, 1]},
        {"_id": f"{model}:7", "machineid": "7", "env-uuid": model, "jobs": [2]},
        {"_id": f"{model}:8", "machineid": "8", "model-uuid": model},
        {"_id": f"{model}:9", "machineid": "9", "model-uuid": model, "jobs": [1]},
    ]
    with tarfile.open(FIXTURES / "valid-backup.tar.gz") as outer:
        meta = parse_metadata_json(_read(outer, "juju-backup/metadata.json"))
    facts = backup_facts(
        meta, {"model": f"model-{model}"}, machines, backup_id="x", archive_size=0, unpacked_size=0,
        has_oplog=False,
    )
    target = rewrite.ReaddressTarget(facts.machine_id, "10.201.0.50", "manual:10.201.0.50", model)
    data = b"".join(bson.encode(m) for m in machines)
    _, changes = rewrite.rewrite_collection(data, rewrite.MACHINES, target)
    demoted = sorted({str(c.doc_id).rpartition(":")[2] for c in changes if c.field == "jobs"})
    assert [c.machine_id for c in facts.others] == demoted == ["1", "2", "7"]
    assert facts.restored is not None and facts.restored.machine_id == "0"


def test_a_raft_state_of_other_machines_is_refused_even_with_force() -> None:
    backup = fixture_backup()
    foreign = spare(raft_state=True, raft_machines=("machine-3",))
    for options in (DR, P.RestoreOptions(mode=P.Mode.dr, force=True)):
        with pytest.raises(RefusedError) as err:
            P.check_preconditions(backup, foreign, options, ())
        assert "raft state (/var/lib/juju/raft) of machine-3, not of machine-0" in err.value.message
        assert "without /var/lib/juju/raft" in (err.value.hint or "")
    P.check_preconditions(backup, spare(raft_state=True, raft_machines=("machine-0",)), DR, ())
    P.check_preconditions(backup, spare(raft_state=False), DR, ())


def juju3(backup: P.BackupFacts) -> P.BackupFacts:
    """The fixture's facts as a Juju 3.6 backup."""
    return dataclasses.replace(backup, juju_version="3.6.21", mongo_version=None)


def test_a_juju3_backup_onto_a_machine_without_a_dqlite_node_is_refused_even_with_force() -> None:
    backup = juju3(fixture_backup())
    bare = spare(profile="juju-3.6", mongo_version="4.4.30")
    for options in (DR, P.RestoreOptions(mode=P.Mode.dr, force=True)):
        with pytest.raises(RefusedError) as err:
            P.check_preconditions(backup, bare, options, ())
        assert err.value.exit_code == EXIT_REFUSED
        assert "spare0 has no dqlite node (/var/lib/juju/dqlite is missing or empty)" in err.value.message
        assert "bootstrap a Juju 3.6 controller on spare0 first" in (err.value.hint or "")
    P.check_preconditions(backup, spare(profile="juju-3.6", dqlite_node=True, dqlite_servers=1), DR, ())
    P.check_preconditions(fixture_backup(), spare(), DR, ())  # 2.x has no dqlite


def bootstrapped(backup: P.BackupFacts, **kw: object) -> P.TargetFacts:
    """A target `juju bootstrap` made: machine 0 of a controller of its own, juju-db and jujud live."""
    values: dict[str, object] = dict(
        name="boot0", juju_version=backup.juju_version, machine_id="0",
        controller_uuid="11111111-2222-3333-4444-555555555555", live_services=("juju-db", "jujud-machine-0"),
        has_state=True, mongo_version="3.6.3", models=("controller",),
    )
    values.update(kw)
    return spare(**values)


def test_a_freshly_bootstrapped_controller_is_restored_over_and_the_plan_says_so() -> None:
    backup = fixture_backup()
    plan = P.make_plan(backup, bootstrapped(backup), DR)
    assert plan.target_kind.startswith(
        "boot0 is a freshly bootstrapped controller (controller 11111111-2222-3333-4444-555555555555, "
        "machine 0, only its controller model)")
    assert f"replaced by the backup's (controller {backup.controller_uuid})" in plan.target_kind
    assert "its raft state stays" in plan.target_kind
    assert plan.as_dict()["target-kind"] == plan.target_kind
    # its own state is snapshotted, and it gets the backup's units (juju-db.config, CA) although its
    # machine 0 has units already: they are of another controller
    assert plan.step_names()[1:3] == (P.STOP, P.SNAPSHOT) and P.INSTALL in plan.step_names()
    three = juju3(backup)
    plan3 = P.make_plan(three, bootstrapped(three, dqlite_node=True, dqlite_servers=1), DR)
    assert "its dqlite node stays" in plan3.target_kind


def test_a_controller_with_more_than_its_controller_model_is_not_taken_for_a_fresh_one() -> None:
    backup = fixture_backup()
    for models in (("controller", "default"), None, ("other",)):
        target = bootstrapped(backup, models=models)
        with pytest.raises(RefusedError, match="live controller of another controller") as err:
            P.make_plan(backup, target, DR)
        assert "--force" in (err.value.hint or "")
        assert P.make_plan(backup, target, P.RestoreOptions(mode=P.Mode.dr, force=True)).target_kind == ""
    same = bootstrapped(backup, controller_uuid=backup.controller_uuid)
    assert P.make_plan(backup, same, DR).target_kind == ""  # its own controller: no fresh one


def test_a_3x_backup_of_another_machine_id_than_the_bootstrapped_targets_needs_force() -> None:
    backup = dataclasses.replace(juju3(fixture_backup()), machine_id="1")
    target = bootstrapped(backup, dqlite_node=True, dqlite_servers=1)
    with pytest.raises(RefusedError, match="boot0's dqlite node belongs to controller machine 0") as err:
        P.check_preconditions(backup, target, DR, ())
    assert "restore a backup taken on machine 0" in (err.value.hint or "")
    P.check_preconditions(backup, target, P.RestoreOptions(mode=P.Mode.dr, force=True), ())
    two = dataclasses.replace(fixture_backup(), machine_id="1")
    P.check_preconditions(two, bootstrapped(two), DR, ())  # 2.x: no dqlite node to match
