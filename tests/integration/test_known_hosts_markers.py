"""known_hosts markers against a lab host's real OpenSSH (issue 11): a `@revoked` line refuses the
key it names (exit 3, also with --accept-new-host-key), `@cert-authority` lines are skipped with one
warning and the plain line still pins the host. Before, either marker crashed every connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_connect import host_key_line, jb
from tests.lab.lab import Lab

pytestmark = pytest.mark.lab


def test_a_revoked_lab_host_key_is_refused_with_exit_3(shared_lab: Lab, tmp_path: Path) -> None:
    ctl = shared_lab.host("ctl0")
    known = tmp_path / "known_hosts"
    known.write_text(f"@revoked * {host_key_line(ctl)}\n{ctl.ip} {host_key_line(ctl)}\n")
    for extra in ((), ("--accept-new-host-key",)):
        result = jb(shared_lab, "--known-hosts", str(known), *extra, "-H", "ctl0", "status")
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith(f"error: HOST KEY OF ctl0 ({ctl.ip}) IS REVOKED: ssh-ed25519 SHA256:")
        assert f"@revoked line in {known}" in result.stderr and "hint:" in result.stderr
        assert result.stdout == ""
    assert known.read_text().count("\n") == 2  # nothing recorded


def test_cert_authority_lines_are_skipped_with_one_warning(shared_lab: Lab, tmp_path: Path) -> None:
    ctl = shared_lab.host("ctl0")
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority *.example.com {host_key_line(ctl)}\n{ctl.ip} {host_key_line(ctl)}\n")
    result = jb(shared_lab, "--known-hosts", str(known), "-H", "ctl0", "status")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(f"warning: {known}: 1 @cert-authority line skipped") == 1, result.stderr
    assert "profile" in result.stdout
