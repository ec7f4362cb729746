"""The Host contract on the FakeHost (tests/host_contract.py; the same cases run on a real SSHHost in
tests/host/test_host_contract_ssh.py), and what only the fake does: refuse what it was not told."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.fakehost import LOCAL, FakeHost, Reply, UnexpectedScript
from tests.host_contract import CASES, Case, Scratch


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_fake_host_keeps_the_host_contract(case: Case, tmp_path: Path) -> None:
    host = FakeHost("fake", tmp_path)
    case(host, lambda script: host.expect(script, LOCAL) and None, Scratch.same(tmp_path))


def test_a_script_the_fake_was_not_told_about_fails_the_test(tmp_path: Path) -> None:
    host = FakeHost("fake", tmp_path).expect("known", Reply("{}\n"))
    assert host.run("known", "anything").json() == {}
    with pytest.raises(UnexpectedScript, match="'probe' was not expected"):
        host.run("probe", "echo {}")
    with pytest.raises(UnexpectedScript, match="outside the fake host's root"):
        host.get("/etc/passwd", io.BytesIO())
    assert host.ran == ["known"]
