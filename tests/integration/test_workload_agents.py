"""The lab's workload machines (`machines=`): their agents log in to the controller's API stand-in
with the passwords the database holds, and fail when the password or the address is wrong."""

from __future__ import annotations

import re

import pytest

from tests.conftest import LabFactory
from tests.lab.agents import agent_tags, wait_agent, wait_agents
from tests.lab.provision import read_db

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("profile", ["juju-2.9", "juju-2.8", "juju-2.8-bionic", "juju-2.8-focal"])
def test_workload_agents_log_in_and_a_bad_password_is_refused(lab_factory: LabFactory, profile: str) -> None:
    lab = lab_factory(controllers=1, machines=2, profile=profile)
    ctl = lab.controllers[0]
    docs = read_db(ctl.root, profile, dbs=["juju"])["juju"]
    models = {d["model-uuid"] for d in docs["machines"] if d["machineid"] in {"1", "2"}}
    assert len(models) == 2  # one workload machine in the controller model, one in "default"
    for host in lab.workloads:
        assert agent_tags(host) == [f"machine-{host.machine_id}", f"unit-ubuntu-{host.machine_id}"]
        wait_agents(host, "connected", f"{ctl.ip}:17070")
        units = host.ssh("systemctl list-units --plain --no-legend 'jujud-*'").stdout
        # every 2.8 runs unit agents as jujud-unit-* services (bionic, focal too); 2.9 nests them
        assert ("jujud-unit-ubuntu-" in units) == profile.startswith("juju-2.8")
    m0 = lab.workloads[0]
    conf = m0.root / f"var/lib/juju/agents/machine-{m0.machine_id}/agent.conf"
    conf.write_text(re.sub(r"(?m)^apipassword: .*$", "apipassword: wrong", conf.read_text()))
    m0.ssh(f"systemctl restart jujud-machine-{m0.machine_id}", check=True)
    status = wait_agent(m0, f"machine-{m0.machine_id}", "failing")
    assert "invalid entity name or password" in status["error"]

