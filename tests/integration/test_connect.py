"""Connecting to lab hosts through the CLI: host keys, sudo, and detached jobs surviving a dead client.

Runs `.venv/bin/jujubackup -F <lab ssh_config> -H ctl0 status` as a subprocess; host-side state is read
through the lab host's root dir or OpenSSH (`LabHost.ssh`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.lab import Lab, LabHost

pytestmark = pytest.mark.lab

JUJUBACKUP = str(Path(sys.executable).parent / "jujubackup")


def jb(lab: Lab, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the CLI against the lab's ssh config."""
    return subprocess.run([JUJUBACKUP, "-F", str(lab.ssh_config), *args], capture_output=True, text=True,
                          timeout=timeout, check=False, stdin=subprocess.DEVNULL)  # no terminal to ask


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 90.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.5)


def host_key_line(host: LabHost) -> str:
    key = (host.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    return f"{key[0]} {key[1]}"


def test_unknown_host_key_is_exit_3_and_accept_new_records_it(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    known = tmp_path / "known_hosts"
    known.write_text("")
    refused = jb(lab, "--known-hosts", str(known), "-H", "ctl0", "status")
    assert refused.returncode == 3, refused.stderr
    assert "not known" in refused.stderr and "--accept-new-host-key" in refused.stderr
    assert known.read_text() == ""

    accepted = jb(lab, "--known-hosts", str(known), "--accept-new-host-key", "-H", "ctl0", "status")
    assert accepted.returncode != 3, accepted.stderr
    assert known.read_text() == f"{ctl.ip} {host_key_line(ctl)}\n"
    again = jb(lab, "--known-hosts", str(known), "-H", "ctl0", "status")
    assert again.returncode != 3, again.stderr


def test_changed_host_key_is_exit_3_with_ssh_keygen_hint(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(controllers=1, spares=1)
    ctl, spare = lab.host("ctl0"), lab.host("spare0")
    known = tmp_path / "known_hosts"
    known.write_text(f"{ctl.ip} {host_key_line(spare)}\n")  # another host's key under ctl0's address
    result = jb(lab, "--known-hosts", str(known), "--accept-new-host-key", "-H", "ctl0", "status")
    assert result.returncode == 3, result.stderr
    assert "HAS CHANGED" in result.stderr
    assert f"ssh-keygen -f {known} -R {ctl.ip}" in result.stderr
    assert known.read_text() == f"{ctl.ip} {host_key_line(spare)}\n"


def openssh_fingerprint(host: LabHost) -> str:
    pub = host.root / "etc/ssh/ssh_host_ed25519_key.pub"
    return subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)], check=True,
                          capture_output=True, text=True).stdout.split()[1]


def test_changed_host_key_on_one_ha_member_aborts_not_falls_over(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(controllers=2)
    ctl0, ctl1 = lab.host("ctl0"), lab.host("ctl1")
    known = tmp_path / "known_hosts"
    known.write_text(f"{ctl0.ip} {host_key_line(ctl1)}\n{ctl1.ip} {host_key_line(ctl1)}\n")
    result = jb(lab, "--known-hosts", str(known), "-H", "ctl0", "-H", "ctl1", "list")
    assert result.returncode == 3, result.stderr
    assert f"HOST KEY OF ctl0 ({ctl0.ip}) HAS CHANGED" in result.stderr
    assert f"got ssh-ed25519 {openssh_fingerprint(ctl0)}, known_hosts has ssh-ed25519 " \
           f"{openssh_fingerprint(ctl1)}" in result.stderr
    assert "using" not in result.stderr and result.stdout == ""
    # an unreachable member still falls over to the next one
    fallback = jb(lab, "-H", "ctl0:2222", "-H", "ctl1", "list")
    assert fallback.returncode == 0, fallback.stderr
    assert f"connection refused by {ctl0.ip}:2222" in fallback.stderr
    assert "Errno" not in fallback.stderr


def test_closed_port_is_connection_refused_on_one_line(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    result = jb(lab, "-H", "ctl0:2222", "status", timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == [
        f"error: connection refused by {ctl.ip}:2222 (ctl0)",
        "hint: check that sshd runs on the host and the port is right",
    ]


def test_sudo_wanting_a_password_is_exit_3(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    rule = ctl.root / "etc/sudoers.d/zz-jujubackup-test"
    rule.write_text("ubuntu ALL=(ALL:ALL) PASSWD: ALL\n")
    rule.chmod(0o440)
    result = jb(lab, "-H", "ubuntu@ctl0", "status", timeout=60)
    assert result.returncode == 3, result.stderr
    assert "sudo requires a password on ctl0" in result.stderr
    assert "NOPASSWD" in result.stderr


def test_an_included_file_and_a_match_host_block_reach_the_controller(shared_lab: Lab, tmp_path: Path
                                                                      ) -> None:
    """The alias comes from an Included file, the user, key and known_hosts from a `Match host`
    block on the address it names (ssh -G): without either, `labctl` resolves nowhere or its key is
    unknown (exit 3)."""
    ctl = shared_lab.host("ctl0")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-lab.conf").write_text(f"Host labctl\n  HostName {ctl.ip}\n")
    config = tmp_path / "config"
    config.write_text(
        f"Include {tmp_path}/conf.d/*.conf\n"
        f"Match host {ctl.ip}\n  User root\n  IdentityFile {shared_lab.key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {shared_lab.known_hosts}\n"
    )
    config.chmod(0o600)
    argv = [JUJUBACKUP, "-F", str(config), "-H", "labctl", "status", "--format", "json"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert ctl.ip in result.stdout or "ctl0" in result.stdout, result.stdout


def test_unreachable_host_is_exit_3(lab_factory) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    lab.host("ctl0").power_off()
    result = jb(lab, "--connect-timeout", "3", "-H", "ctl0", "status", timeout=60)
    assert result.returncode == 3, result.stderr
    assert "ctl0" in result.stderr


CLIENT = """
import sys
from pathlib import Path
from jujubackup.connect import SSHConnector, connect_one
from jujubackup.settings import ConnectionSettings
host = connect_one(SSHConnector(ConnectionSettings(ssh_config=Path(sys.argv[1]))), "ctl0")
host.run_detached("hold", sys.argv[2], poll=0.2, heartbeat_timeout=5)
"""


def test_detached_job_is_aborted_by_the_watchdog_when_the_client_dies(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    ctl.ssh("systemd-run --unit=jbtest-svc sleep 100000", check=True)
    job = (
        "trap 'systemctl start jbtest-svc 2>/dev/null || systemd-run --unit=jbtest-svc sleep 100000;"
        " rm -f /var/tmp/jbtest.tmp' EXIT\n"
        "systemctl stop jbtest-svc\n: > /var/tmp/jbtest.tmp\nsleep 100000\n"
    )
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(lab.ssh_config), job])
    try:
        wait_for(lambda: (ctl.root / "var/tmp/jbtest.tmp").exists(), "the job to stop the service")
        assert ctl.ssh("systemctl is-active jbtest-svc").stdout.strip() != "active"
        units = ctl.ssh("systemctl list-units --no-legend 'jujubackup-hold-*'").stdout
        assert "jujubackup-hold-" in units  # started under systemd-run
    finally:
        client.kill()
        client.wait()
    wait_for(lambda: ctl.ssh("systemctl is-active jbtest-svc").stdout.strip() == "active",
             "the job's EXIT trap to restart the service")
    assert not (ctl.root / "var/tmp/jbtest.tmp").exists()
    wait_for(lambda: ctl.ssh("ls -A /run/jujubackup").stdout.strip() == "", "the state dir to go")
    wait_for(lambda: "jujubackup-hold-" not in ctl.ssh("systemctl list-units --all --no-legend "
                                                         "'jujubackup-*'").stdout, "the unit to be collected")
