"""connect.py: -H parsing, ssh config, controllers.yaml, and first-working-host selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from jujubackup.connect import controller_hosts, parse_host, resolve_target, resolve_targets
from jujubackup.errors import NotFoundError, UsageError
from jujubackup.host import sshresolve
from jujubackup.settings import ConnectionSettings


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


@pytest.mark.parametrize("resolver", ["ssh -G", "without an ssh client"])
def test_ssh_config_include_is_expanded_like_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 resolver: str) -> None:
    """Include: globs in lexical order, `~` and ~/.ssh-relative paths, nested files, missing ones
    skipped; the first value found wins, as in ssh(1): by ssh -G, and by our own reader when there
    is no ssh client."""
    if resolver != "ssh -G":
        monkeypatch.setattr(sshresolve, "ssh_binary", lambda: None)
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
    with pytest.raises(UsageError, match=r"nested more than 16|Too many recursive configuration includes"):
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
