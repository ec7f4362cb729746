"""repoint-machine's reading of an agent's connection from its own log (remote_scripts/lib/agentlog.bash.j2),
run by bash on local log files: the api-caller's INFO line as 2.8/2.9 (`Addr() string`: host:port) and
newer trees (`Addr() *url.URL`: wss://host:port) print it, failures, and a rotated log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from jujubackup import scripts

TS = "2026-12-03 07:00:00"


def _state(log_dir: Path, tag: str, offset: int = 0) -> str:
    env = scripts.environment()
    text = "\n".join(["#!/bin/bash", "set -euo pipefail", "export LC_ALL=C",
                      env.from_string('{{ bash_lib("agentlog") }}').render(),
                      'agent_log_dir=$1', 'agent_state "$2" "$3"'])
    done = subprocess.run(["bash", "-c", text, "test", str(log_dir), tag, str(offset)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("line", [
    # 2.8.10 / 2.9.42: conn.Addr() is the dialled "host:port"
    f'{TS} INFO juju.worker.apicaller connect.go:163 [0f0e0d] "machine-1" successfully connected to '
    '"10.201.0.50:17070"',
    # newer trees: conn.Addr() is a *url.URL, %q prints its String()
    f'{TS} INFO juju.worker.apicaller connect.go:127 [0f0e0d] "machine-1" successfully connected to '
    '"wss://10.201.0.50:17070"',
    f'{TS} INFO juju.worker.apicaller connect.go:127 [0f0e0d] "machine-1" successfully connected to '
    '"wss://10.201.0.50:17070/model/0f0e0d0c-1111-4222-8333-444455556666/api"',
])
def test_the_connection_line_of_each_juju_generation_gives_host_port(tmp_path: Path, line: str) -> None:
    (tmp_path / "machine-1.log").write_text(f"{TS} DEBUG juju.worker.apicaller connecting\n{line}\n")
    assert _state(tmp_path, "machine-1") == "connected 10.201.0.50:17070"


def test_ipv6_address_and_another_agents_line(tmp_path: Path) -> None:
    (tmp_path / "unit-ubuntu-1.log").write_text(
        f'{TS} INFO juju.worker.apicaller connect.go:163 [0f0e0d] "unit-ubuntu-1" successfully connected to '
        '"wss://[fd00::9]:17070"\n'
        f'{TS} INFO juju.worker.apicaller connect.go:163 [0f0e0d] "machine-1" successfully connected to '
        '"10.0.0.1:17070"\n')
    assert _state(tmp_path, "unit-ubuntu-1") == "connected [fd00::9]:17070"


def test_a_failure_after_the_connection_wins(tmp_path: Path) -> None:
    (tmp_path / "machine-1.log").write_text(
        f'{TS} INFO juju.worker.apicaller connect.go:163 [0f0e0d] "machine-1" successfully connected to '
        '"10.0.0.1:17070"\n'
        f'{TS} ERROR juju.worker.dependency engine.go:693 "api-caller" manifold worker returned unexpected '
        'error: connection lost\n')
    assert _state(tmp_path, "machine-1").startswith("failing ")


def test_a_log_rotated_since_the_offset_is_read_from_its_start(tmp_path: Path) -> None:
    # the offset was taken from the old, longer machine-1.log; lumberjack renamed it and began anew
    (tmp_path / "machine-1.log").write_text(
        f'{TS} INFO juju.worker.apicaller connect.go:163 [0f0e0d] "machine-1" successfully connected to '
        '"10.201.0.50:17070"\n')
    assert _state(tmp_path, "machine-1", offset=10_000_000) == "connected 10.201.0.50:17070"
    assert _state(tmp_path / "none", "machine-1") == "none"
