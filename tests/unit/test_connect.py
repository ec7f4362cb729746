"""connect.py: -H parsing, ssh config, controllers.yaml, and first-working-host selection."""

from __future__ import annotations

import io
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.connect import connect_first, controller_hosts, parse_host, resolve_target, resolve_targets
from jujubackup.errors import EXIT_CONNECT, ConnectError, NotFoundError, UsageError
from jujubackup.host.ssh import HostKeyChangedError
from jujubackup.settings import ConnectionSettings
from jujubackup.ui import UI
from tests.unit.local_sshd import LocalSSHD, local_sshd


def test_parse_host() -> None:
    assert (parse_host("ctl0").host, parse_host("ctl0").user, parse_host("ctl0").port) == ("ctl0", None, None)
    spec = parse_host("ubuntu@10.0.0.1:2222")
    assert (spec.user, spec.host, spec.port) == ("ubuntu", "10.0.0.1", 2222)
    spec = parse_host("[fd00::1]:22")
    assert (spec.user, spec.host, spec.port) == (None, "fd00::1", 22)
    assert parse_host("fd00::1").host == "fd00::1"
    with pytest.raises(UsageError):
        parse_host("host:port")


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host ctl0\n  HostName 10.201.0.11\n  User root\n  Port 2200\n  IdentityFile /keys/lab\n"
        "  UserKnownHostsFile /lab/known_hosts\n  ProxyJump bastion\n"
        "Host bastion\n  HostName 10.201.0.2\n  User jump\n"
    )
    return config


def test_ssh_config_is_honoured(tmp_path: Path) -> None:
    settings = ConnectionSettings(ssh_config=write_config(tmp_path))
    target = resolve_target(settings, "ctl0")
    assert (target.name, target.hostname, target.port, target.user) == ("ctl0", "10.201.0.11", 2200, "root")
    assert target.identity_files == (Path("/keys/lab"),)
    assert target.known_hosts == (Path("/lab/known_hosts"),)
    assert target.jump is not None
    assert (target.jump.hostname, target.jump.user, target.jump.port) == ("10.201.0.2", "jump", 22)


def test_ssh_config_include_is_expanded_like_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Include: globs in lexical order, `~` and ~/.ssh-relative paths, nested files, missing ones
    skipped; the first value found wins, as in ssh(1)."""
    home = tmp_path / "home"
    (home / ".ssh" / "config.d").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / ".ssh" / "config.d" / "10-lab").write_text(
        "Host ctl0\n  HostName 10.201.0.11\n  Include ~/.ssh/nested\n"
    )
    (home / ".ssh" / "config.d" / "20-other").write_text("Host ctl0\n  HostName 10.201.0.99\n  Port 2201\n")
    (home / ".ssh" / "nested").write_text("  User root\n")
    config = tmp_path / "ssh_config"
    config.write_text("Include config.d/* does-not-exist\nInclude=/nowhere/*.conf\nHost *\n  Port 2222\n")
    target = resolve_target(ConnectionSettings(ssh_config=config), "ctl0")
    assert (target.hostname, target.user, target.port) == ("10.201.0.11", "root", 2201)

    (home / ".ssh" / "loop").write_text("Include ~/.ssh/loop\n")
    config.write_text("Include loop\n")
    with pytest.raises(UsageError, match="nested more than 16"):
        resolve_target(ConnectionSettings(ssh_config=config), "ctl0")


def test_command_line_wins_over_the_config(tmp_path: Path) -> None:
    settings = ConnectionSettings(
        ssh_config=write_config(tmp_path), identity=Path("/keys/mine"), known_hosts=Path("/kh"),
    )
    target = resolve_target(settings, "ubuntu@ctl0:22")
    assert (target.user, target.port) == ("ubuntu", 22)
    assert target.identity_files == (Path("/keys/mine"), Path("/keys/lab"))
    assert target.known_hosts == (Path("/kh"),)


def write_controllers(data: Path) -> None:
    (data / "ssh").mkdir(parents=True)
    (data / "ssh" / "juju_id_rsa").write_text("key")
    (data / "controllers.yaml").write_text(
        "controllers:\n  prod:\n    uuid: abc\n    api-endpoints: ['10.201.0.11:17070', '10.201.0.12:17070',"
        " '[fd00::3]:17070', '10.201.0.11:17071']\ncurrent-controller: prod\n"
    )


def test_controller_endpoints_from_juju_data(tmp_path: Path) -> None:
    write_controllers(tmp_path / "juju")
    settings = ConnectionSettings(controller="prod", ssh_config=tmp_path / "none")
    targets = resolve_targets(settings, env={"JUJU_DATA": str(tmp_path / "juju")})
    assert [t.hostname for t in targets] == ["10.201.0.11", "10.201.0.12", "fd00::3"]
    assert {t.user for t in targets} == {"ubuntu"}
    assert targets[0].identity_files == (tmp_path / "juju" / "ssh" / "juju_id_rsa",)


def test_unknown_controller_is_not_found(tmp_path: Path) -> None:
    write_controllers(tmp_path)
    with pytest.raises(NotFoundError) as caught:
        controller_hosts("staging", tmp_path)
    assert "known: prod" in caught.value.message


def test_no_host_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve_targets(ConnectionSettings(), env={})


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
    with connect_first(settings, ui) as host:  # type: ignore[attr-defined]
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

    host = connect_first(settings, ui, accept=healthy)
    host.close()
    assert len(seen) == 2


def test_connect_first_with_no_usable_host_is_exit_3(sshd: LocalSSHD) -> None:
    ui, _ = quiet_ui()
    with pytest.raises(ConnectError) as caught:
        connect_first(local_settings(sshd, "127.0.0.1:1", "127.0.0.1:2"), ui)
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
        connect_first(settings, ui)
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
        connect_first(local_settings(sshd, "127.0.0.1:1"), ui)
    assert caught.value.message == "connection refused by 127.0.0.1:1"
    assert "Errno" not in caught.value.message and caught.value.hint
