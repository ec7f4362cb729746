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
