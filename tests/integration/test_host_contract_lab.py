"""The Host contract (tests/host_contract.py) on a lab controller over its real OpenSSH and sudo,
through the CLI's own connector and ssh config: what the FakeHost promises in unit tests holds there."""

from __future__ import annotations

from typing import Any

import pytest

from jujubackup.connect import SSHConnector, connect_one
from jujubackup.settings import ConnectionSettings
from tests.host_contract import CASES, Scratch


@pytest.mark.lab
@pytest.mark.parametrize("via", ["openssh", "paramiko"])
def test_a_lab_controller_keeps_the_host_contract(lab_factory: Any, via: str) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    connector = SSHConnector(ConnectionSettings(ssh_config=lab.ssh_config, stream_via=via))
    for case in CASES:
        remote = f"/root/contract-{case.__name__}"
        ctl.ssh(f"mkdir -p {remote}")
        host = connect_one(connector, "ctl0")
        try:
            case(host, lambda script: None, Scratch(ctl.root / remote.lstrip("/"), remote))
        finally:
            host.close()
