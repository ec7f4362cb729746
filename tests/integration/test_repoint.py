"""Re-pointing the model's agents after a disaster recovery (issue 14 "Done when"), through the CLI
against the lab: 1 controller, 1 spare, workload machines in two models whose stand-in agents log in
to the controller's API with the passwords of the database."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from jujubackup.errors import EXIT_PARTIAL
from tests import libjuju
from tests.conftest import LabFactory
from tests.lab import provision
from tests.lab.agents import agent_tags, wait_agents
from tests.lab.lab import Lab, LabHost
from tests.lab.standins import jujud

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def jb(lab: Lab, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the jujubackup CLI with the lab's ssh config (and a private repoint state dir)."""
    return subprocess.run([sys.executable, "-m", "jujubackup", "-F", str(lab.ssh_config), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def ok(res: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert res.returncode == code, f"exit {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    return res


def disaster(lab: Lab, tmp_path: Path) -> Path:
    """Create a backup on ctl0, download it, power ctl0 off; return the archive."""
    created = ok(jb(lab, "-H", "ctl0", "create"))
    backup_id = created.stdout.strip().splitlines()[-1]
    archive = tmp_path / "backup.tar.gz"
    ok(jb(lab, "-H", "ctl0", "download", backup_id, str(archive)))
    lab.host("ctl0").power_off()
    return archive


def confs(host: LabHost) -> dict[str, str]:
    root = host.root / "var/lib/juju/agents"
    return {tag: (root / tag / "agent.conf").read_text() for tag in agent_tags(host)}


def without_addresses(text: str) -> str:
    return re.sub(r"(?m)^apiaddresses:\n(?:- .*\n)+", "apiaddresses: X\n", text)


def assert_repointed(host: LabHost, before: dict[str, str], address: str) -> None:
    """Every agent of `host` is connected to `address`; its agent.conf differs only in apiaddresses,
    which is exactly [address]; it stays 0600 root:root."""
    wait_agents(host, "connected", address, timeout=30)
    after = confs(host)
    for tag, text in after.items():
        assert re.search(r"(?m)^apiaddresses:\n- (.*)\n(?!- )", text).group(1) == address  # type: ignore[union-attr]
        assert without_addresses(text) == without_addresses(before[tag])
        st = (host.root / "var/lib/juju/agents" / tag / "agent.conf").stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (0, 0)


def secrets_of(lab: Lab) -> list[str]:
    out = []
    for h in lab.workloads:
        for text in confs(h).values():
            out += re.findall(r"(?m)^(?:apipassword|oldpassword): (\S+)$", text)
    out.append(lab.key.read_text().splitlines()[1])
    return out


def test_disaster_recovery_repoints_every_agent(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory(controllers=1, spares=1, machines=4, profile="juju-2.9")
    spare = lab.host("spare0")
    before = {h.name: confs(h) for h in lab.workloads}
    ctl = lab.host("ctl0")
    db = {c: {str(d["_id"]): d for d in docs}
          for c, docs in provision.read_db(ctl.root, ctl.profile, dbs=["juju"])["juju"].items()}
    conf = jujud.parse_agent_conf((ctl.root / "var/lib/juju/agents/machine-0/agent.conf").read_text())
    ca = str(conf["cacert"])
    archive = disaster(lab, tmp_path)
    res = ok(jb(lab, "restore", "--archive", str(archive), "--target", "spare0", "--yes",
                env={"XDG_STATE_HOME": str(tmp_path / "state")}))
    for h in lab.workloads:
        assert_repointed(h, before[h.name], f"{spare.ip}:17070")
    # python-libjuju sees the backup's models, its 5 machines and the ubuntu application of each model
    assert libjuju.expected(db)["applications"] == {"controller": ["ubuntu"], "default": ["ubuntu"]}
    libjuju.assert_sees_backup(lab, spare.ip, ca, db, tmp_path, by_name=False)
    table = res.stdout[res.stdout.index("agents re-pointed"):]
    assert len(re.findall(r"(?m)^\d+ +(controller|default) +10\.201\.0\.\d+ .* done\s*$", table)) == 4
    assert {"controller", "default"} <= set(re.findall(r"(?m)^\d+ +(\w+) ", table))
    for secret in secrets_of(lab):
        assert secret not in res.stdout + res.stderr
    # a second run changes nothing and restarts nothing: every agent is already connected
    again = json.loads(ok(jb(lab, "repoint", "--target", "spare0", "--format", "json",
                             env={"XDG_STATE_HOME": str(tmp_path / "state")})).stdout)
    agents = [a for m in again["machines"] for a in m["agents"]]
    assert len(agents) == 8 and not any(a["changed"] or a["restarted"] for a in agents)


def test_a_powered_off_machine_is_reported_and_resume_finishes_it(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=1, spares=1, machines=4, profile="juju-2.8")
    spare, off = lab.host("spare0"), lab.host("m1")
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    before = {h.name: confs(h) for h in lab.workloads}
    archive = disaster(lab, tmp_path)
    off.power_off()
    res = ok(jb(lab, "restore", "--archive", str(archive), "--target", "spare0", "--yes", env=env),
             EXIT_PARTIAL)
    for h in lab.workloads:
        if h is not off:
            assert_repointed(h, before[h.name], f"{spare.ip}:17070")
    assert re.search(rf"(?m)^{off.machine_id} +default +{off.ip} +- +unreachable: ", res.stdout)
    assert f"by hand, default/{off.machine_id}: ssh ubuntu@{off.ip} " in res.stdout
    assert "--resume" in res.stderr and f"default/{off.machine_id}" in res.stderr
    state_files = list((tmp_path / "state/jujubackup/repoint").iterdir())
    assert len(state_files) == 1 and stat.S_IMODE(state_files[0].stat().st_mode) == 0o600
    off.power_on()
    wait_agents(off, "failing")  # still dialling the dead controller
    resumed = json.loads(ok(jb(lab, "repoint", "--target", "spare0", "--resume", "--format", "json",
                               env=env)).stdout)
    runs = {m["machine"]: (m["result"], m["earlier-run"]) for m in resumed["machines"]}
    assert runs.pop(off.machine_id) == ("done", False)
    assert set(runs.values()) == {("done", True)}  # the other three were not touched again
    assert_repointed(off, before[off.name], f"{spare.ip}:17070")
    units = off.ssh("systemctl is-active jujud-unit-ubuntu-2").stdout.strip()
    assert units == "active"  # 2.8: the unit agent is a service of its own, restarted too


@contextmanager
def no_route_to(hosts: list[LabHost]) -> Iterator[None]:
    """Forbid this workstation (the test process) any traffic to `hosts`; the lab hosts still reach
    each other over the bridge."""
    for h in hosts:
        subprocess.run(["ip", "route", "replace", "prohibit", f"{h.ip}/32"], check=True)
    try:
        yield
    finally:
        for h in hosts:
            subprocess.run(["ip", "route", "del", "prohibit", f"{h.ip}/32"], check=False, capture_output=True)


def test_via_controller_when_the_workstation_cannot_reach_the_machines(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=1, spares=1, machines=2, profile="juju-2.9")
    spare = lab.host("spare0")
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    before = {h.name: confs(h) for h in lab.workloads}
    archive = disaster(lab, tmp_path)
    ok(jb(lab, "restore", "--archive", str(archive), "--target", "spare0", "--yes", "--no-repoint", env=env))
    for h in lab.workloads:
        wait_agents(h, "failing")
    with no_route_to(lab.workloads):
        direct = ok(jb(lab, "repoint", "--target", "spare0", env=env), EXIT_PARTIAL)
        assert direct.stdout.count("unreachable") == 2
        dry = ok(jb(lab, "repoint", "--target", "spare0", "--via-controller", "--dry-run", env=env))
        assert "-- 10.201.0" in dry.stdout and f"+- {spare.ip}:17070" in dry.stdout
        assert "apipassword" not in dry.stdout and "planned: 2 agent.conf to change" in dry.stdout
        assert {h.name: confs(h) for h in lab.workloads} == before  # the dry run changed nothing
        ok(jb(lab, "repoint", "--target", "spare0", "--via-controller", env=env))
    for h in lab.workloads:
        assert_repointed(h, before[h.name], f"{spare.ip}:17070")
