"""The Host contract (tests/host_contract.py) on a real SSHHost over a loopback sshd, over both
stream engines: what the FakeHost promises in unit tests, the real host keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup.host.ssh import SSHHost
from tests.host.local_sshd import LocalSSHD, local_sshd
from tests.host.test_host_ssh import target_for
from tests.host_contract import CASES, Case, Scratch

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


@pytest.mark.parametrize("via", ["openssh", "paramiko"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_ssh_host_keeps_the_host_contract(case: Case, via: str, sshd: LocalSSHD, tmp_path: Path) -> None:
    with SSHHost.connect(target_for(sshd, stream_via=via)) as host:
        case(host, lambda script: None, Scratch.same(tmp_path))
