"""Lab provisioning into a plain directory (root: it chowns files as the lab hosts have them)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


@pytest.mark.parametrize("profile", ["juju-2.8", "juju-2.8-bionic", "juju-2.8-focal", "juju-2.9", "juju-3.6"])
def test_workload_unit_agents_are_services_before_2_9_on_every_series(tmp_path: Path, profile: str) -> None:
    from tests.lab import provision

    ctl = provision.HostSpec("ctl0", "10.201.0.11", "controller", "0", profile)
    m0 = provision.HostSpec("m0", "10.201.0.240", "workload", "1", profile)
    cluster = provision.new_cluster(profile, [ctl], workloads=[m0])
    provision.provision_host(tmp_path, m0, cluster)
    units = tmp_path / "etc/systemd/system"
    services = sorted(p.name for p in units.glob("jujud-*.service"))
    if provision.PROFILES[profile].juju_version.startswith("2.8."):
        # 2.8 runs each unit agent as its own service, whatever the series and the juju-db packaging
        assert services == ["jujud-machine-1.service", "jujud-unit-ubuntu-1.service"]
        assert (units / "multi-user.target.wants/jujud-unit-ubuntu-1.service").is_symlink()
    else:
        assert services == ["jujud-machine-1.service"]  # 2.9+: nested in the machine agent
