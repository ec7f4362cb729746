"""connect.py against a local sshd (root): first-working-host selection, changed host keys."""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.connect import SSHConnector, connect_first
from jujubackup.errors import EXIT_CONNECT, ConnectError
from jujubackup.host.ssh import HostKeyChangedError
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI
from tests.host.local_sshd import LocalSSHD, local_sshd

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


def quiet_ui() -> tuple[UI, io.StringIO]:
    from rich.console import Console

    buf = io.StringIO()
    return UI(err=Console(file=buf, width=300)), buf


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


def local_settings(sshd: LocalSSHD, *hosts: str) -> ConnectionSettings:
    return ConnectionSettings(
        hosts=hosts, identity=sshd.key, known_hosts=sshd.known_hosts, ssh_config=Path("/nonexistent"),
        connect_timeout=3, user="root",
    )


def test_connect_first_skips_a_dead_host_and_says_which_was_used(sshd: LocalSSHD) -> None:
    ui, err = quiet_ui()
    settings = local_settings(sshd, "127.0.0.1:1", f"127.0.0.1:{sshd.port}")
    with connect_first(SSHConnector(settings), ui) as host:  # type: ignore[attr-defined]
        assert host.run("id", "id -u").stdout.strip() == "0"
    assert f"using root@127.0.0.1:{sshd.port}" in err.getvalue()
    assert "127.0.0.1:1" in err.getvalue()


def test_connect_first_skips_an_unhealthy_host(sshd: LocalSSHD) -> None:
    ui, _ = quiet_ui()
    settings = local_settings(sshd, f"127.0.0.1:{sshd.port}", f"root@127.0.0.1:{sshd.port}")
    seen: list[str] = []

    def healthy(host) -> bool:  # type: ignore[no-untyped-def]
        seen.append(host.name)
        return len(seen) > 1

    host = connect_first(SSHConnector(settings), ui, accept=healthy)
    host.close()
    assert len(seen) == 2


def test_connect_first_with_no_usable_host_is_exit_3(sshd: LocalSSHD) -> None:
    ui, _ = quiet_ui()
    with pytest.raises(ConnectError) as caught:
        connect_first(SSHConnector(local_settings(sshd, "127.0.0.1:1", "127.0.0.1:2")), ui)
    assert caught.value.exit_code == EXIT_CONNECT
    assert "none of 2 hosts" in caught.value.message


def known_hosts_with_changed_key(sshd: LocalSSHD, tmp_path: Path) -> Path:
    """known_hosts: [localhost]:PORT has another key (a changed key), [127.0.0.1]:PORT the right one."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    other_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    known = tmp_path / "known_hosts"
    known.write_text(f"[localhost]:{sshd.port} {other_key}\n" + sshd.known_hosts_line())
    return known


def test_connect_first_aborts_on_a_changed_host_key_of_one_ha_member(sshd: LocalSSHD, tmp_path: Path) -> None:
    ui, err = quiet_ui()
    settings = replace(local_settings(sshd, f"localhost:{sshd.port}", f"127.0.0.1:{sshd.port}"),
                       known_hosts=known_hosts_with_changed_key(sshd, tmp_path))
    with pytest.raises(HostKeyChangedError) as caught:
        connect_first(SSHConnector(settings), ui)
    assert caught.value.exit_code == EXIT_CONNECT
    assert f"HOST KEY OF localhost ([localhost]:{sshd.port}) HAS CHANGED" in caught.value.message
    assert "using" not in err.getvalue()


def test_cli_with_a_changed_host_key_on_the_first_ha_member_exits_3(
    sshd: LocalSSHD, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = known_hosts_with_changed_key(sshd, tmp_path)
    code = cli.main([
        "-F", "/nonexistent", "-i", str(sshd.key), "--known-hosts", str(known),
        "-H", f"root@localhost:{sshd.port}", "-H", f"root@127.0.0.1:{sshd.port}", "list",
    ])
    captured = capsys.readouterr()
    assert code == EXIT_CONNECT, captured.err
    assert captured.err.startswith(f"error: HOST KEY OF localhost ([localhost]:{sshd.port}) HAS CHANGED")
    assert "hint: check the host's key out of band" in captured.err
    assert captured.out == ""


def test_connect_first_with_a_refused_port_says_so_on_one_line(sshd: LocalSSHD) -> None:
    ui, _ = quiet_ui()
    with pytest.raises(ConnectError) as caught:
        connect_first(SSHConnector(local_settings(sshd, "127.0.0.1:1")), ui)
    assert caught.value.message == "connection refused by 127.0.0.1:1"
    assert "Errno" not in caught.value.message and caught.value.hint
