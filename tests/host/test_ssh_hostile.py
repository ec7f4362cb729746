"""Host names and known_hosts files that lie (issue 11): a host value cannot run a command through
the ssh config's `Match exec … %h`, and known_hosts markers are understood (`@revoked` refuses its
key with exit 3, `@cert-authority` lines are skipped with one warning) instead of crashing."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.connect import parse_host
from jujubackup.errors import EXIT_CONNECT, EXIT_USAGE, UsageError
from jujubackup.host import knownhosts
from jujubackup.host.ssh import HostKeyRevokedError, SSHHost
from jujubackup.host.sshconfig import QuotingSSHConfig
from jujubackup.host.sshresolve import lookup
from jujubackup.host.target import SSHTarget
from tests.host.local_sshd import LocalSSHD, local_sshd

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


def exec_config(tmp_path: Path, marker_dir: Path) -> Path:
    """An ssh config whose `Match exec` uses %h (and %n) as people write them."""
    config = tmp_path / "ssh_config"
    config.write_text(
        f'Match exec "test -e {marker_dir}/%h-%n"\n  User matched\n'
        "Host *\n  Port 2222\n"
    )
    return config


INJECTIONS = ["h$(touch {m}/pwned)", "h`touch {m}/pwned`", "h;touch {m}/pwned", "h|touch {m}/pwned",
              "ubuntu@h$(touch {m}/pwned):22", "h&&touch {m}/pwned"]


@pytest.mark.parametrize("template", INJECTIONS)
def test_a_host_value_cannot_run_a_command_through_match_exec(
    template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "markers"
    marker.mkdir()
    value = template.format(m=marker)
    code = cli.main(["-F", str(exec_config(tmp_path, marker)), "-H", value, "status"])
    err = capsys.readouterr().err
    assert not (marker / "pwned").exists()
    assert code == EXIT_USAGE, err
    assert err.startswith(f"error: bad host {value!r}"), err
    assert "hint: use [user@]host[:port]" in err


def test_a_controllers_yaml_endpoint_cannot_run_a_command_through_match_exec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "markers"
    marker.mkdir()
    data = tmp_path / "juju"
    data.mkdir()
    (data / "controllers.yaml").write_text(
        "controllers:\n  prod:\n    api-endpoints: ['10.201.0.11:17070', "
        f"'h$(touch {marker}/pwned):17070']\n"
    )
    monkeypatch.setenv("JUJU_DATA", str(data))
    code = cli.main(["-F", str(exec_config(tmp_path, marker)), "-c", "prod", "status"])
    err = capsys.readouterr().err
    assert not (marker / "pwned").exists()
    assert code == EXIT_USAGE, err
    assert f"controller 'prod' in {data / 'controllers.yaml'} has a bad api-endpoint" in err
    assert "hint: fix" in err


def test_match_exec_still_works_for_a_plain_host_name(tmp_path: Path) -> None:
    marker = tmp_path / "markers"
    marker.mkdir()
    config = exec_config(tmp_path, marker)
    assert lookup(config, "ctl0").user is None
    (marker / "ctl0-ctl0").touch()
    entry = lookup(config, "ctl0")
    assert (entry.user, entry.port) == ("matched", 2222)


def test_match_exec_tokens_are_shell_quoted_even_for_an_unchecked_alias(tmp_path: Path) -> None:
    """Defence in depth below parse_host: the config class itself quotes what it substitutes."""
    marker = tmp_path / "markers"
    marker.mkdir()
    config = QuotingSSHConfig.from_text(f'Match exec "test -e {marker}/%h"\n  User matched\n')
    found = config.lookup(f"h$(touch {marker}/pwned)")
    assert not (marker / "pwned").exists()
    assert found.get("user") is None
    (marker / "it's").touch()
    assert config.lookup("it's").get("user") == "matched"  # quoted, so the file name is exact


@pytest.mark.parametrize("value", ["h$(x)", "a b", "-oProxyCommand=x", "h;x", "fe80::1%eth0", "user;x@h",
                                   "h:0", "h:70000", "h*", "", "x@", "h\n"])
def test_parse_host_refuses_what_is_no_host_name(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_host(value)
    assert caught.value.exit_code == EXIT_USAGE and caught.value.hint


@pytest.mark.parametrize(("value", "parts"), [
    ("my_ctl.example.com", ("my_ctl.example.com", None, None)),
    ("ubuntu@10.0.0.1:2222", ("10.0.0.1", "ubuntu", 2222)),
    ("[fd00::1]:22", ("fd00::1", None, 22)),
    ("ssh://jump@bastion:2200", ("bastion", "jump", 2200)),
])
def test_parse_host_accepts_names_and_addresses(value: str, parts: tuple[str, str | None, int | None]
                                                ) -> None:
    spec = parse_host(value)
    assert (spec.host, spec.user, spec.port) == parts


# -- known_hosts markers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


def target_for(server: LocalSSHD, known: Path, **changes: object) -> SSHTarget:
    values: dict[str, object] = {
        "name": "local", "hostname": "127.0.0.1", "port": server.port, "user": "root",
        "identity_files": (server.key,), "known_hosts": (known,), "connect_timeout": 5.0,
    }
    values.update(changes)
    return SSHTarget(**values)  # type: ignore[arg-type]


def key_text(pub: Path) -> str:
    return " ".join(pub.read_text().split()[:2])


def other_key(tmp_path: Path) -> str:
    path = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return key_text(path.with_suffix(".pub"))


@pytest.mark.parametrize("listed", ["also-listed", "unknown-otherwise", "accept-new"])
def test_a_revoked_host_key_is_refused_with_exit_3(sshd: LocalSSHD, tmp_path: Path, listed: str) -> None:
    known = tmp_path / "known_hosts"
    lines = [f"@revoked * {key_text(sshd.host_key_pub)}"]
    if listed == "also-listed":
        lines.append(sshd.known_hosts_line().strip())
    known.write_text("\n".join(lines) + "\n")
    before = known.read_text()
    with pytest.raises(HostKeyRevokedError) as caught:
        SSHHost.connect(target_for(sshd, known, accept_new_host_key=listed == "accept-new"))
    assert caught.value.exit_code == EXIT_CONNECT
    assert f"HOST KEY OF local ([127.0.0.1]:{sshd.port}) IS REVOKED" in caught.value.message
    assert f"@revoked line in {known}" in caught.value.message
    assert caught.value.hint
    assert known.read_text() == before  # never recorded


def test_a_revoked_line_for_another_host_or_key_does_not_refuse(sshd: LocalSSHD, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        f"@revoked otherhost,[10.0.0.9]:22 {key_text(sshd.host_key_pub)}\n"
        f"@revoked * {other_key(tmp_path)}\n" + sshd.known_hosts_line()
    )
    with SSHHost.connect(target_for(sshd, known)) as host:
        assert host.run("true", "true").returncode == 0


def test_cert_authority_lines_are_skipped_with_one_warning(
    sshd: LocalSSHD, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        f"@cert-authority *.example.com {other_key(tmp_path)}\n"
        f"@cert-authority * {key_text(sshd.host_key_pub)}\n"
        "@unknown-marker * ssh-ed25519 AAAA\nbadline\n" + sshd.known_hosts_line()
    )
    code = cli.main(["-F", "/nonexistent", "-i", str(sshd.key), "--known-hosts", str(known),
                     "-H", f"root@127.0.0.1:{sshd.port}", "-H", f"root@localhost:{sshd.port}", "list"])
    err = capsys.readouterr().err
    warning = f"warning: {known}: 2 @cert-authority lines skipped"
    assert err.count(warning) == 1, err
    assert "internal error" not in err
    assert code != 1, err


def test_a_hashed_revoked_pattern_matches_the_host() -> None:
    import paramiko

    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2222")
    assert knownhosts.matches([hashed], ["[127.0.0.1]:2222", "127.0.0.1"])
    assert not knownhosts.matches([hashed], ["[127.0.0.1]:22"])
    assert knownhosts.matches(["[127.0.0.1]:2222"], ["[127.0.0.1]:2222"])  # `[` is no class
    assert not knownhosts.matches(["*", "!127.0.0.1"], ["127.0.0.1"])
    assert knownhosts.matches(["10.201.0.*"], ["10.201.0.11"])
