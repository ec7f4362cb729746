"""restore's instance id for the restored machine: --instance-id, the target's own controller,
cloud-init's instance id (validated: it is hostile input), else manual:<address>."""

from __future__ import annotations

from jujubackup.restore.target import TargetProbe, choose_instance_id, cloud_instance_id


def probe(**kw: object) -> TargetProbe:
    values: dict[str, object] = {"name": "spare0", "address": "10.201.0.50", "profile": "juju-2.9"}
    values.update(kw)
    return TargetProbe(**values)  # type: ignore[arg-type]


def test_the_order_flag_controller_cloud_init_manual() -> None:
    cloud = probe(cloud_instance_id="i-0abc")
    assert choose_instance_id("given", cloud) == ("given", "--instance-id")
    assert choose_instance_id(None, probe(instance_id="juju-1", cloud_instance_id="i-0abc"))[0] == "juju-1"
    assert choose_instance_id(None, cloud) == (
        "i-0abc", "cloud-init on spare0 (/var/lib/cloud/data/instance-id)"
    )
    assert choose_instance_id(None, probe())[0] == "manual:10.201.0.50"


def test_a_cloud_init_value_that_is_no_instance_id_is_ignored() -> None:
    assert cloud_instance_id(" i-0abc1234 ") == "i-0abc1234"
    assert cloud_instance_id("iid-datasource-none") == "iid-datasource-none"
    for bad in ("", None, "a b", "x" * 200, "$(reboot)", "../../etc", '"quoted"'):
        assert cloud_instance_id(bad) == ""


def test_a_spare_target_from_its_preflight_and_what_is_hostile_in_it() -> None:
    import pytest

    from jujubackup.remote_values import HostileOutputError
    from jujubackup.restore.target import target_probe

    pre = {"addresses": ["10.201.0.51", "10.201.0.50"], "free_bytes": 10**9, "state_bytes": 5,
           "existing": ["/snap/bin/juju-db.mongod", "/snap/bin/juju-db.mongorestore"],
           "peers": [{"address": "10.201.0.50", "port": 37017, "answers": True},   # its own: not a peer
                     {"address": "10.201.0.12", "port": 37017, "answers": True}],
           "cloud_instance_id": "i-0abc"}
    got = target_probe(None, pre, "spare0", "192.0.2.1", None, "2.9.42")
    assert (got.address, got.addresses) == ("10.201.0.51", ("10.201.0.51", "10.201.0.50"))
    assert (got.profile, got.has_state) == ("juju-2.9", False)
    assert [(p.address, p.answers) for p in got.peers] == [("10.201.0.12", True)]
    assert (got.free_bytes, got.cloud_instance_id, got.instance_id) == (10**9, "i-0abc", "")
    assert target_probe(None, pre, "spare0", "10.201.0.50", None, "2.9.42").address == "10.201.0.50"
    assert target_probe(None, pre, "spare0", "10.201.0.50", "10.9.9.9", "2.9.42").address == "10.9.9.9"
    with pytest.raises(HostileOutputError):
        target_probe(None, {**pre, "peers": [{"address": "10.201.0.12", "port": 70000, "answers": True}]},
                     "spare0", "10.201.0.50", None, "2.9.42")
