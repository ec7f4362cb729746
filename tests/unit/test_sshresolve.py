"""The ssh config as OpenSSH resolves it (`ssh -G`, host/sshresolve.py), with the real ssh client:
Include, Match, %-tokens, only what the config sets (not ssh's defaults), ProxyCommand refused."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path

import pytest

from jujubackup.connect import resolve_target, resolve_targets
from jujubackup.errors import EXIT_USAGE, UsageError
from jujubackup.host import sshresolve
from jujubackup.settings import ConnectionSettings

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_an_included_file_and_a_match_host_block_are_honoured(tmp_path: Path) -> None:
    """`Match host` sees the HostName set before it (as in ssh(1)), the Included file's Port counts,
    and the IdentityFile's %h/%r tokens are expanded for this host."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "ports.conf").write_text("Host ctl*\n  Port 2201\n")
    path = config(tmp_path, (
        f"Include {tmp_path}/conf.d/*.conf\n"
        "Host ctl0\n  HostName 10.201.0.11\n"
        "Match host 10.201.0.*\n  User ubuntu\n  IdentityFile /keys/%h-%r.key\n"
        "Match host 10.99.*\n  User nobody-here\n"
    ))
    target = resolve_target(ConnectionSettings(ssh_config=path), "ctl0")
    assert (target.hostname, target.port, target.user) == ("10.201.0.11", 2201, "ubuntu")
    assert target.identity_files == (Path("/keys/10.201.0.11-ubuntu.key"),)
    other = resolve_target(ConnectionSettings(ssh_config=path), "10.77.0.5")
    assert (other.hostname, other.port, other.user) == ("10.77.0.5", 22, getpass.getuser())


def test_only_what_the_config_sets_is_taken_not_the_defaults_of_ssh(tmp_path: Path) -> None:
    entry = sshresolve.lookup(config(tmp_path, "Host elsewhere\n  Port 2222\n"), "ctl0")
    assert entry == sshresolve.ConfigEntry()  # no default id_rsa…, known_hosts, port or user


def test_the_config_s_ciphers_are_taken_as_ssh_resolves_them(tmp_path: Path) -> None:
    """A `Ciphers` line is honoured by the OpenSSH streams: ssh -G's resolved list (a `^` moved
    aes256-ctr to the front), in its order; no line, no list (the streams then prefer AES-GCM)."""
    path = config(tmp_path, "Host picky\n  Ciphers aes256-ctr,aes128-ctr\n"
                  "Host first\n  Ciphers ^aes256-ctr\n")
    settings = ConnectionSettings(ssh_config=path)
    assert resolve_target(settings, "picky").ciphers == ("aes256-ctr", "aes128-ctr")
    first = resolve_target(settings, "first").ciphers
    assert first[0] == "aes256-ctr" and "chacha20-poly1305@openssh.com" in first
    assert resolve_target(settings, "other").ciphers == ()


def test_user_naming_the_local_user_wins_over_the_controller_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With -c the default user is ubuntu; a config `User` equal to the local user must still win
    (ssh -G prints the local user both for it and for no `User` line)."""
    data = tmp_path / "juju"
    data.mkdir()
    (data / "controllers.yaml").write_text(
        "controllers:\n  prod:\n    api-endpoints: ['10.201.0.11:17070']\n")
    me = getpass.getuser()
    path = config(tmp_path, f"Host 10.201.0.11\n  User {me}\n")
    settings = ConnectionSettings(controller="prod", ssh_config=path)
    assert [t.user for t in resolve_targets(settings, env={"JUJU_DATA": str(data)})] == [me]
    path.write_text("Host 10.201.0.99\n  User someone\n")
    assert [t.user for t in resolve_targets(settings, env={"JUJU_DATA": str(data)})] == ["ubuntu"]


def test_strict_host_key_checking_accept_new_is_honoured_and_no_is_not(tmp_path: Path) -> None:
    path = config(tmp_path, "Host new\n  StrictHostKeyChecking accept-new\n"
                  "Host lax\n  StrictHostKeyChecking no\n")
    assert resolve_target(ConnectionSettings(ssh_config=path), "new").accept_new_host_key
    assert not resolve_target(ConnectionSettings(ssh_config=path), "lax").accept_new_host_key


def test_a_proxy_command_is_refused(tmp_path: Path) -> None:
    path = config(tmp_path, "Host ctl0\n  ProxyCommand nc %h %p\n")
    with pytest.raises(UsageError) as caught:
        resolve_target(ConnectionSettings(ssh_config=path), "ctl0")
    assert caught.value.exit_code == EXIT_USAGE
    assert "ProxyCommand" in caught.value.message and "ProxyJump" in (caught.value.hint or "")


def test_a_config_ssh_refuses_is_a_usage_error_with_ssh_s_reason(tmp_path: Path) -> None:
    """paramiko ignores an unknown keyword; ssh(1) refuses the file, and so do we."""
    path = config(tmp_path, "Host ctl0\n  Frobnicate yes\n")
    with pytest.raises(UsageError) as caught:
        resolve_target(ConnectionSettings(ssh_config=path), "ctl0")
    assert "Bad configuration option: frobnicate" in caught.value.message
    assert "ssh -G ctl0" in (caught.value.hint or "")


def test_home_other_than_the_passwd_home_reads_that_home_s_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ssh(1) finds ~/.ssh/config through the passwd entry; jujubackup's ~ is $HOME (known_hosts
    too), so with $HOME elsewhere its config is passed with -F."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text("Host ctl0\n  HostName 10.201.0.12\n")
    (home / ".ssh" / "config").chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    assert sshresolve.passwd_home() != home
    assert resolve_target(ConnectionSettings(), "ctl0").hostname == "10.201.0.12"
    assert sshresolve.config_args(None) == ["-F", str(home / ".ssh" / "config")]


def test_an_identity_file_token_ssh_would_expand_later_but_we_cannot_is_refused() -> None:
    with pytest.raises(UsageError, match="%C"):
        sshresolve.expand_tokens("~/.ssh/%C", {"h": "x"})
    assert sshresolve.expand_tokens("/k/%h%%%n", {"h": "a", "n": "b", "%": "%"}) == "/k/a%b"
