"""The OpenSSH stream argv: pinned to one host key, never interactive, no secrets (pure; the lab tests
in tests/integration/test_streams.py run it against real sshd)."""

from __future__ import annotations

from pathlib import Path

from jujubackup.host.openssh import CIPHERS, PIN_ALIAS, host_key_algorithms, known_hosts_line, ssh_argv
from jujubackup.host.target import SSHTarget


def _options(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")


def test_argv_pins_the_verified_key_and_never_prompts() -> None:
    target = SSHTarget(name="ctl0", hostname="10.201.0.10", port=2222, user="ubuntu",
                       identity_files=(Path("/k/id one"),), connect_timeout=7.4, keepalive=9)
    argv = ssh_argv("/usr/bin/ssh", target, Path("/tmp/pin dir/known_hosts"), "ssh-ed25519")
    options = _options(argv)
    assert argv[:3] == ["/usr/bin/ssh", "-F", "/dev/null"]
    assert argv[-2:] == ["--", "10.201.0.10"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "ubuntu"
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["UserKnownHostsFile"] == '"/tmp/pin dir/known_hosts"'
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["HostKeyAlias"] == PIN_ALIAS
    assert options["HostKeyAlgorithms"] == "ssh-ed25519"
    assert options["BatchMode"] == "yes" and options["PasswordAuthentication"] == "no"
    assert options["IdentitiesOnly"] == "yes" and options["IdentityAgent"] == "none"
    assert argv[argv.index("-i") + 1] == "/k/id one"
    assert options["ConnectTimeout"] == "7" and options["ServerAliveInterval"] == "9"
    assert options["Ciphers"].startswith("aes128-gcm@openssh.com,")


def test_streams_prefer_aes_gcm_and_still_allow_every_other_default_cipher() -> None:
    """No Ciphers in the operator's config: GCM first (AES-NI), then OpenSSH's other defaults, so a
    server that refuses GCM still gets a cipher it takes."""
    offered = _options(ssh_argv("ssh", SSHTarget(name="h", hostname="h"), Path("/kh"), "ssh-ed25519"))
    ciphers = offered["Ciphers"].split(",")
    assert ciphers[:2] == ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    assert {"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"} <= set(ciphers)
    assert offered["Ciphers"] == CIPHERS


def test_the_ciphers_of_the_operator_s_config_win() -> None:
    target = SSHTarget(name="h", hostname="h", ciphers=("chacha20-poly1305@openssh.com", "aes256-ctr"))
    argv = ssh_argv("ssh", target, Path("/kh"), "ssh-ed25519")
    assert _options(argv)["Ciphers"] == "chacha20-poly1305@openssh.com,aes256-ctr"
    assert sum(a.startswith("Ciphers=") for a in argv) == 1


def test_without_identity_files_the_agent_and_default_keys_are_used() -> None:
    argv = ssh_argv("ssh", SSHTarget(name="h", hostname="h"), Path("/kh"), "ecdsa-sha2-nistp256")
    assert "-i" not in argv and "IdentitiesOnly=yes" not in argv
    assert _options(argv)["HostKeyAlgorithms"] == "ecdsa-sha2-nistp256"


def test_rsa_keys_are_asked_for_with_sha2_signatures() -> None:
    assert host_key_algorithms("ssh-rsa") == "rsa-sha2-512,rsa-sha2-256"


def test_known_hosts_line_names_only_the_alias() -> None:
    assert known_hosts_line("ssh-ed25519", "AAAAC3Nz") == f"{PIN_ALIAS} ssh-ed25519 AAAAC3Nz\n"
