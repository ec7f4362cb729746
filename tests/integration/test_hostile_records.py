"""A controller whose records lie (issue 11), through the real CLI against a lab controller: the
record is tampered with over ssh, then `download`, `list` and `restore ID` run as an operator would.

The record never chooses a local path; a bad record is reported and skipped by `list`, refused by
name with exit 8; its text reaches the terminal inert.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_transfer import BACKUPS, SYNTH_ID, big_archive, jb
from tests.lab.lab import LabHost

pytestmark = pytest.mark.lab

NOTES = "[/nope] [bold]x[/bold] \x1b]0;owned\x07\x1b[2J"
OTHER_ID = "20261127-060001.ffffffff-0000-1111-2222-333333333333"


def read_record(ctl: LabHost, backup_id: str) -> dict[str, Any]:
    got = ctl.ssh(f"cat /{BACKUPS}/{backup_id}.json", check=True)
    return dict(json.loads(got.stdout))


def write_record(ctl: LabHost, name: str, record: dict[str, Any] | str) -> None:
    text = record if isinstance(record, str) else json.dumps(record)
    ctl.ssh(f"cat > /{BACKUPS}/{name} && chmod 0600 /{BACKUPS}/{name}", input=text, check=True)


def everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_a_lying_record_writes_nothing_and_is_reported_by_list(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    assert jb(lab, "ctl0", "upload", str(big_archive(tmp_path, 1))).returncode == 0
    site = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    record = read_record(ctl, SYNTH_ID)
    payload = b"import os; os.system('touch /tmp/pwned')\n"

    for planted in (str(site / "evil.pth"), "../../venv/lib/python3.12/site-packages/evil.pth"):
        # the controller serves the payload where the record points (as a compromised one would)
        remote = f"/{BACKUPS}/{planted}"
        ctl.ssh(f"mkdir -p \"$(dirname {remote})\" && cat > {remote}", input=payload.decode(), check=True)
        digest = hashlib.sha256(payload).hexdigest()
        lie = {**record, "archive": planted, "size": len(payload), "sha256": digest}
        write_record(ctl, f"{SYNTH_ID}.json", lie)
        before = everything_under(tmp_path)
        got = jb(lab, "ctl0", "download", "latest", "--dir", str(out))
        assert got.returncode == 8, got.stderr
        assert "invalid and was not used" in got.stderr and "names archive" in got.stderr, got.stderr
        assert everything_under(tmp_path) == before
        assert not list(site.iterdir())
        assert not list(site.iterdir())
        by_id = jb(lab, "ctl0", "download", SYNTH_ID, "--dir", str(out))
        assert by_id.returncode == 8, by_id.stderr
        work = tmp_path / "a" / "work"  # restore ID downloads the same way, into its work dir
        restored = jb(lab, "ctl0", "restore", SYNTH_ID, "--dry-run", "--work-dir", str(work))
        assert restored.returncode == 8, restored.stderr
        assert "invalid and was not used" in restored.stderr, restored.stderr
        assert not list(site.iterdir()) and not (work.exists() and list(work.iterdir()))
        listed = jb(lab, "ctl0", "list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
        assert f"unreadable record {SYNTH_ID}.json" in listed.stderr

    # the honest record back with hostile Notes (rich markup, terminal escapes), a second one with
    # "size": "big": list skips only that one and shows the Notes inert
    write_record(ctl, f"{SYNTH_ID}.json", {**record, "Notes": NOTES})
    other = {**record, "ID": OTHER_ID, "archive": f"{OTHER_ID}.tar.gz", "size": "big"}
    write_record(ctl, f"{OTHER_ID}.json", other)
    listed = jb(lab, "ctl0", "list")
    assert listed.returncode == 0, listed.stderr
    assert SYNTH_ID in listed.stdout and OTHER_ID not in listed.stdout
    assert f"unreadable record {OTHER_ID}.json" in listed.stderr and "size 'big'" in listed.stderr
    assert "[/nope] [bold]x[/bold] \\x1b]0;owned\\x07\\x1b[2J" in listed.stdout
    assert "\x1b" not in listed.stdout + listed.stderr
    brief = jb(lab, "ctl0", "list", "--brief")
    assert brief.returncode == 0 and brief.stdout.split() == [SYNTH_ID], brief.stderr
    refused = jb(lab, "ctl0", "download", OTHER_ID, "--dir", str(out))
    assert refused.returncode == 8, refused.stderr
    fresh = tmp_path / "fresh" / "dir"  # created (0700) by download
    got = jb(lab, "ctl0", "download", SYNTH_ID, "--dir", str(fresh))
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in fresh.iterdir()) == [f"{SYNTH_ID}.json", f"{SYNTH_ID}.tar.gz"]
    assert fresh.stat().st_mode & 0o777 == 0o700
