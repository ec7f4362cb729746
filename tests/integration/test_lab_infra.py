"""The lab itself: real systemd + OpenSSH hosts, isolated from each other, and nothing left behind."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LabFactory
from tests.lab import lab as labmod
from tests.lab import provision
from tests.lab.__main__ import main as lab_main
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def ssh(lab: Lab, target: str, cmd: str, *opts: str) -> subprocess.CompletedProcess[str]:
    """Run the plain OpenSSH client with the lab's generated config (no extra options unless given)."""
    return subprocess.run(["ssh", "-F", str(lab.ssh_config), *opts, target, cmd], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def lab_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m tests.lab ARGS` from the repo root."""
    return subprocess.run([sys.executable, "-m", "tests.lab", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def nothing_left(lab_id: str, pids: list[int]) -> dict[str, list[str]]:
    """Return the non-empty kinds of resources lab `lab_id` still has (empty dict = clean)."""
    return {k: v for k, v in labmod.resources_of(lab_id, pids).items() if v}


def nspawn_pids(lab_id: str) -> list[int]:
    """Return the nspawn pids recorded in lab `lab_id`'s state.json."""
    state = json.loads((labmod.STATE_ROOT / lab_id / "state.json").read_text())
    return [h["nspawn_pid"] for h in state["hosts"] if h["nspawn_pid"]]


@pytest.fixture(scope="module")
def trio(lab_session: None) -> Iterator[Lab]:
    """Three hosts: ctl0 (controller, juju-2.9), spare0, spare1."""
    lab = Lab.create(controllers=1, spares=2)
    try:
        yield lab
    finally:
        lab.teardown()


def test_three_hosts_boot_real_systemd_with_their_own_names(trio: Lab) -> None:
    seen = {}
    for host in trio.hosts:
        res = host.ssh("hostname; cat /proc/1/comm; systemctl is-system-running", check=True)
        name, comm, state = res.stdout.split()
        assert (name, comm) == (host.name, "systemd")
        assert state in ("running", "degraded")
        seen[host.name] = host.ip
    assert sorted(seen) == ["ctl0", "spare0", "spare1"]
    assert len(set(seen.values())) == 3


def test_generated_ssh_config_works_with_openssh_and_pins_host_keys(trio: Lab) -> None:
    assert ssh(trio, "ctl0", "true").returncode == 0
    assert ssh(trio, "spare1", "id -un").stdout.strip() == "root"
    # The host key is pinned: with an empty known_hosts the same config refuses the host.
    refused = ssh(trio, "ctl0", "true", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes")
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr


def test_ubuntu_user_has_passwordless_sudo(trio: Lab) -> None:
    res = ssh(trio, "ubuntu@ctl0", "id -un; sudo -n id -un")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ubuntu", "root"]


def test_hosts_resolve_each_other_and_have_no_route_out(trio: Lab) -> None:
    res = trio.host("spare0").ssh("getent hosts ctl0 spare1; ip -4 route", check=True)
    assert f"{trio.host('ctl0').ip} " in res.stdout
    assert f"{trio.host('spare1').ip} " in res.stdout
    assert "default" not in res.stdout


def test_service_stop_on_one_host_leaves_the_other_running(trio: Lab) -> None:
    unit = "[Unit]\nDescription=lab probe\n[Service]\nExecStart=/bin/sleep infinity\n"
    a, b = trio.host("spare0"), trio.host("spare1")
    for host in (a, b):
        (host.root / "etc/systemd/system/labprobe.service").write_text(unit)
        host.ssh("systemctl daemon-reload && systemctl start labprobe", check=True)
    a.ssh("systemctl stop labprobe", check=True)
    assert a.ssh("systemctl is-active labprobe").stdout.strip() == "inactive"
    assert b.ssh("systemctl is-active labprobe").stdout.strip() == "active"
    a.ssh("systemctl start labprobe", check=True)
    assert a.ssh("systemctl is-active labprobe").stdout.strip() == "active"
    assert not (trio.host("ctl0").root / "etc/systemd/system/labprobe.service").exists()


def test_host_files_are_shared_with_the_test_process_only(trio: Lab) -> None:
    a, b = trio.host("spare0"), trio.host("spare1")
    a.ssh("echo written-over-ssh > /root/marker", check=True)
    assert (a.root / "root/marker").read_text() == "written-over-ssh\n"
    assert not (b.root / "root/marker").exists()
    (b.root / "root/from-test").write_text("hello\n")
    assert b.ssh("cat /root/from-test").stdout == "hello\n"


def test_shared_lab_is_one_juju_29_controller_and_one_spare(shared_lab: Lab) -> None:
    ctl, spare = shared_lab.host("ctl0"), shared_lab.host("spare0")
    assert [(h.name, h.role, h.machine_id, h.profile) for h in shared_lab.hosts] == [
        ("ctl0", "controller", "0", "juju-2.9"), ("spare0", "spare", None, "juju-2.9")]
    assert (ctl.root / "var/lib/juju/agents/machine-0/agent.conf").is_file()
    assert not (spare.root / "var/lib/juju/agents").exists()
    assert ssh(shared_lab, "spare0", "hostname").stdout.strip() == "spare0"


def test_power_off_keeps_the_disk_and_power_on_boots_it_again(lab_factory: LabFactory) -> None:
    lab = lab_factory(controllers=0, spares=1)
    host = lab.host("spare0")
    host.ssh("echo kept > /root/disk-marker", check=True)
    boot_before = host.ssh("cat /proc/sys/kernel/random/boot_id", check=True).stdout
    host.power_off()
    assert not host.is_running()
    down = ssh(lab, "spare0", "true", "-o", "ConnectTimeout=2")
    assert down.returncode == 255
    assert (host.root / "root/disk-marker").read_text() == "kept\n"
    host.power_on()
    res = ssh(lab, "spare0",
              "cat /root/disk-marker /proc/sys/kernel/random/boot_id; systemctl is-system-running")
    assert res.returncode == 0, res.stderr  # same IP and pinned host key still valid
    marker, boot_after, state = res.stdout.split()
    assert marker == "kept"
    assert boot_after != boot_before.strip()
    assert state in ("running", "degraded")


def test_cli_up_prints_a_working_lab_and_down_leaves_nothing_behind() -> None:
    name = f"test-{secrets.token_hex(3)}"
    up = lab_cli("up", "--controllers", "1", "--spares", "1", "--name", name)
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    lab_id = doc["lab_id"]
    try:
        hosts = {h["name"]: h for h in doc["hosts"]}
        assert sorted(hosts) == ["ctl0", "spare0"]
        assert hosts["ctl0"]["role"] == "controller" and hosts["ctl0"]["machine_id"] == "0"
        assert hosts["spare0"]["role"] == "spare" and hosts["spare0"]["machine_id"] is None
        assert hosts["ctl0"]["profile"] == "juju-2.9"
        res = subprocess.run(["ssh", "-F", doc["ssh_config"], "ctl0", "hostname"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.stdout.strip() == "ctl0", res.stderr
        assert Path(hosts["ctl0"]["root"], "etc/hostname").read_text() == "ctl0\n"
        assert Path(doc["key"]).stat().st_mode & 0o077 == 0
        pids = nspawn_pids(lab_id)
        assert len(pids) == 2
        assert nothing_left(lab_id, pids).keys() >= {"netns", "veth", "mounts", "cgroups", "pids"}
    finally:
        down = lab_cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert nothing_left(lab_id, pids) == {}


def test_leftovers_of_killed_labs_are_cleared_by_the_next_up() -> None:
    # Two labs of one owner process; the owner and a container get SIGKILLed (no teardown at all).
    # Lab A keeps its state dir (cleared by the names it recorded), lab B loses it (cleared by prefix).
    script = textwrap.dedent("""
        import json, sys, time
        from tests.lab.lab import Lab
        ids = [Lab.create(controllers=0, spares=n).id for n in (2, 1)]
        print(json.dumps(ids), flush=True)
        time.sleep(3600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        lab_a, lab_b = json.loads(owner.stdout.readline())
        pids = nspawn_pids(lab_a) + nspawn_pids(lab_b)
        with labmod.global_lock():  # no other lab user on this machine sweeps while we set the scene
            for pid in [owner.pid, pids[0]]:
                os.kill(pid, signal.SIGKILL)
            owner.wait(timeout=30)
            shutil.rmtree(labmod.STATE_ROOT / lab_b)
            time.sleep(0.2)
            left_a, left_b = nothing_left(lab_a, pids), nothing_left(lab_b, pids)
        assert left_a.keys() >= {"state_dir", "netns", "veth", "mounts", "cgroups", "pids"}
        assert left_b.keys() >= {"netns", "veth", "mounts", "cgroups", "pids"}
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    name = f"test-{secrets.token_hex(3)}"
    up = lab_cli("up", "--controllers", "0", "--spares", "1", "--name", name)
    try:
        assert up.returncode == 0, up.stderr
        assert nothing_left(lab_a, pids) == {}
        assert nothing_left(lab_b, pids) == {}
    finally:
        assert lab_cli("down", "--name", name).returncode == 0


def test_a_lab_that_fails_to_build_removes_what_it_made(lab_session: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    roots: list[Path] = []
    existed: list[set[str]] = []

    def broken_provision(root: Path, host: object, cluster: object) -> None:
        roots.append(root)
        existed.append(set(nothing_left(root.relative_to(labmod.DATA_ROOT).parts[0], [])))
        raise RuntimeError("provisioning exploded")

    monkeypatch.setattr(provision, "provision_host", broken_provision)
    with pytest.raises(RuntimeError, match="provisioning exploded"):
        Lab.create(controllers=1, spares=1)
    lab_id = roots[0].relative_to(labmod.DATA_ROOT).parts[0]
    assert existed[0] >= {"state_dir", "netns", "veth", "mounts"}
    assert nothing_left(lab_id, []) == {}


def test_an_interrupted_pytest_session_tears_its_labs_down(tmp_path: Path) -> None:
    marker = tmp_path / "lab.json"
    (tmp_path / "test_sleeper.py").write_text(textwrap.dedent(f"""
        import json, pathlib, time

        def test_sleeps_with_a_lab(lab_factory):
            lab = lab_factory(controllers=0, spares=1)
            pids = [h.nspawn_pid for h in lab.hosts]
            pathlib.Path({str(marker)!r}).write_text(json.dumps({{"lab_id": lab.id, "pids": pids}}))
            time.sleep(600)
    """))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
            "--rootdir", str(tmp_path), str(tmp_path / "test_sleeper.py")]
    session = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and session.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), session.communicate(timeout=30)[0] if session.poll() is not None else "no lab"
        doc = json.loads(marker.read_text())
        assert nothing_left(doc["lab_id"], doc["pids"]).keys() >= {"state_dir", "netns", "pids"}
        session.send_signal(signal.SIGTERM)
        session.communicate(timeout=60)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert nothing_left(doc["lab_id"], doc["pids"]) == {}


@pytest.mark.parametrize("argv", [["status"], ["up"], ["down"], ["rootfs"]])
def test_lab_commands_refuse_to_run_without_root(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lab_main(argv) == 2
    err = capsys.readouterr().err
    assert "must run as root" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("profile, version", [("juju-2.8", "4.3.46"), ("juju-2.9", "5.")])
def test_hosts_run_the_tools_of_the_release_their_profile_stands_for(lab_factory: LabFactory, profile: str,
                                                                      version: str) -> None:
    """xenial (juju-2.8) runs bash 4.3, where an empty array under `set -u` is unbound (tests/lab/oldbash.py),
    and a setsid without --fork and a systemd-run without --collect (tests/lab/release_gates.py): every
    remote script runs under `set -u` with the host's bash, a workload machine's as well."""
    lab = lab_factory(controllers=1, spares=0, machines=1, profile=profile)
    empty_array = 'set -u; a=(); for x in "${a[@]}"; do :; done; echo ok'
    for host in (lab.host("ctl0"), lab.workloads[0]):
        assert host.ssh("echo $BASH_VERSION", check=True).stdout.startswith(version)
        done = host.ssh(f"bash -c {shlex.quote(empty_array)}")
        if profile == "juju-2.8":
            assert done.returncode != 0 and "a[@]: unbound variable" in done.stderr
        else:
            assert done.returncode == 0 and done.stdout.strip() == "ok"
    ctl = lab.host("ctl0")
    fork = ctl.ssh("setsid -f true")
    collect = ctl.ssh("systemd-run --collect --quiet true")
    if profile == "juju-2.8":
        assert (fork.returncode, fork.stderr) == (1, "setsid: invalid option -- 'f'\n")
        assert (collect.returncode, collect.stderr) == (1, "systemd-run: unrecognized option '--collect'\n")
        assert ctl.ssh("setsid --wait true").returncode == 0  # what 2.27 has still runs
    else:
        assert fork.returncode == 0 and collect.returncode == 0
