"""list / info / remove against the lab, through the CLI (issue 3)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

from jujubackup.profiles import BACKUP_DIR_MARKER, DEFAULT_BACKUP_DIR
from tests.integration.test_create import (
    HOLD_GATE,
    backup_dir,
    catalog_ids,
    dump_running,
    gate_dumps,
    jb,
    jb_argv,
    wait_for,
)
from tests.unit.archive_builders import VALID

pytestmark = pytest.mark.lab


def _create(lab: Any, notes: str, *args: str) -> str:
    done = jb(lab, "create", notes, *args)
    assert done.returncode == 0, done.stderr
    time.sleep(1.1)  # IDs have one-second resolution
    return done.stdout.strip()


def test_list_info_remove(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")

    empty = jb(lab, "list", "--format", "json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []

    first = _create(lab, "first")
    second = _create(lab, "second", "--mode", "quiesce")
    third = _create(lab, "third")

    brief = jb(lab, "list", "--brief")
    assert brief.returncode == 0 and brief.stdout.split() == [first, second, third]
    table = jb(lab, "list")
    assert table.returncode == 0
    assert all(i in table.stdout for i in (first, second, third)) and "quiesce" in table.stdout
    rows = json.loads(jb(lab, "list", "--format", "json").stdout)
    assert [r["ID"] for r in rows] == [first, second, third]
    assert [r["Notes"] for r in rows] == ["first", "second", "third"]
    yaml_out = jb(lab, "list", "--format", "yaml")
    assert yaml_out.returncode == 0 and f"ID: {first}" in yaml_out.stdout

    latest = jb(lab, "info", "latest", "--format", "json")
    assert latest.returncode == 0 and json.loads(latest.stdout)["ID"] == third
    by_prefix = jb(lab, "info", second[:18], "--format", "json")  # date-time + uuid start: unique
    assert by_prefix.returncode == 0
    record = json.loads(by_prefix.stdout)
    assert record["ID"] == second and record["manifest"]["consistency"] == "quiesce"
    assert record["FormatVersion"] == 1 and record["archive_present"] is True
    info_table = jb(lab, "info", second)
    assert info_table.returncode == 0 and "consistency:" in info_table.stdout and second in info_table.stdout

    ambiguous = jb(lab, "info", first[:8])  # every ID of the day shares this prefix
    assert ambiguous.returncode == 5 and "ambiguous" in ambiguous.stderr
    missing = jb(lab, "info", "19990101")
    assert missing.returncode == 5 and "no backup ID matches" in missing.stderr

    # remove asks; without a terminal and without --yes it refuses, changing nothing
    refused = jb(lab, "remove", first)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert catalog_ids(ctl) == sorted([first, second, third])
    # an unknown ID among several: nothing is removed
    partial = jb(lab, "remove", first, "nope", "--yes")
    assert partial.returncode == 5
    assert catalog_ids(ctl) == sorted([first, second, third])

    removed = jb(lab, "remove", first, "latest", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == [first, third]
    assert catalog_ids(ctl) == [second]
    assert not (backup_dir(ctl) / f"{first}.tar.gz").exists()
    assert not (backup_dir(ctl) / f"{third}.tar.gz").exists()
    assert (backup_dir(ctl) / f"{second}.tar.gz").exists()

    answered = subprocess.run(
        jb_argv(lab, "remove", second), input="", capture_output=True, text=True, check=False
    )
    assert answered.returncode == 2  # stdin is not a terminal
    assert catalog_ids(ctl) == [second]


def test_list_reports_orphans_and_lock(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8")
    ctl = lab.host("ctl0")
    kept = _create(lab, "kept")
    d = backup_dir(ctl)
    (d / "20200101-000000.deadbeef.tar.gz").write_bytes(b"not registered")
    holder = ctl.ssh(f"nohup flock {DEFAULT_BACKUP_DIR} sleep 60 >/dev/null 2>&1 & echo $!")
    assert holder.stdout.strip().isdigit()
    try:
        time.sleep(0.5)
        listed = jb(lab, "list", "--brief")
        assert listed.returncode == 0 and listed.stdout.split() == [kept]
        assert "20200101-000000.deadbeef.tar.gz has no record" in listed.stderr
        assert "locked" in listed.stderr
        locked = jb(lab, "remove", kept, "--yes")
        assert locked.returncode == 7, locked.stderr
        assert catalog_ids(ctl) == [kept]
    finally:
        ctl.ssh(f"kill {holder.stdout.strip()}")


def _answer_on_a_terminal(argv: list[str], answer: bytes) -> tuple[int, str]:
    """Run argv with a pseudo-terminal as stdin, type `answer`; return (exit code, stderr)."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(master, answer)
        _out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        os.close(slave)
    return proc.returncode, err


def test_remove_declined_removes_nothing_and_exits_6(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    kept = _create(lab, "kept")
    rc, err = _answer_on_a_terminal(jb_argv(lab, "remove", kept), b"n\n")
    assert rc == 6, err
    assert "not confirmed: nothing removed" in err
    assert catalog_ids(ctl) == [kept] and (backup_dir(ctl) / f"{kept}.tar.gz").exists()
    assert "catalog of ctl0" in jb(lab, "list").stderr  # which host's catalog is shown (HA: the first)
    help_text = subprocess.run(jb_argv(lab, "remove", "--help"), capture_output=True, text=True).stdout
    assert "exits 6" in " ".join(help_text.split())  # click re-wraps the docstring


@pytest.mark.parametrize(
    "args",
    [
        ("create", "--backup-dir", "relative/dir"),
        ("list", "--backup-dir", "relative/dir"),
        ("info", "latest", "--backup-dir", "relative/dir"),
        ("remove", "latest", "--yes", "--backup-dir", "relative/dir"),
        ("status", "--backup-dir", "relative/dir"),
        ("download", "latest", "--backup-dir", "relative/dir"),
    ],
)
def test_relative_backup_dir_is_a_usage_error(shared_lab: Any, args: tuple[str, ...]) -> None:
    done = jb(shared_lab, *args)
    assert done.returncode == 2, done.stderr
    assert "backup dir must be an absolute path" in done.stderr
    assert not (shared_lab.host("ctl0").root / "relative").exists()


def test_unknown_mode_is_a_usage_error(shared_lab: Any) -> None:
    before = catalog_ids(shared_lab.host("ctl0"))
    done = jb(shared_lab, "create", "--mode", "bogus")
    assert done.returncode == 2, done.stderr
    assert "unknown --mode 'bogus'" in done.stderr and "online" in done.stderr
    assert catalog_ids(shared_lab.host("ctl0")) == before


# ------------------------------------------------------------------ a dedicated backup dir (issue 11)

SNAPSHOT = "stat -c '%n %a %U' / /tmp /var/lib/juju /srv/data /srv/data/keep; ls -A /tmp /srv/data | sort"


def test_system_and_foreign_backup_dirs_are_refused_and_left_alone(lab_factory: Any) -> None:
    # the lock used to chmod any --backup-dir 0700 and create removed every .tmp-* / .*.json.tmp in it
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    ctl.ssh(
        "touch /tmp/.tmp-precious /tmp/.notes.json.tmp && mkdir -p /srv/data && touch /srv/data/keep "
        "/srv/data/.tmp-precious && ln -s /tmp /srv/alias && mkdir -m 0755 /srv/empty",
        check=True,
    )
    before = ctl.ssh(SNAPSHOT, check=True).stdout
    for where in ("/", "/tmp", "/tmp/", "//var/lib/juju/backups/..", "/var/lib/juju", "/run/x"):
        for verb in (("create",), ("remove", "latest", "--yes"), ("list",), ("upload", str(VALID))):
            done = jb(lab, *verb, "--backup-dir", where)
            assert done.returncode == 2, (where, verb, done.stderr)
            assert f"backup dir {where} is a system dir" in done.stderr, done.stderr
            assert "hint: give --backup-dir as a dedicated" in done.stderr
    host_side = (("/srv/alias", "is the system dir /tmp"), ("/srv/data", "holds keep, which jujubackup"))
    for where, why in host_side:  # --force: /srv is not on the lab's big filesystem (free space)
        for verb in (("create", "--force"), ("upload", str(VALID))):
            done = jb(lab, *verb, "--backup-dir", where)
            assert done.returncode == 6, (where, verb, done.stderr)
            assert why in done.stderr and "hint: give --backup-dir a new or empty dir" in done.stderr
    assert ctl.ssh(SNAPSHOT, check=True).stdout == before  # modes, owners and files as they were
    assert not (ctl.root / "srv/data" / BACKUP_DIR_MARKER).exists()

    made = jb(lab, "create", "--force", "--backup-dir", "/srv/empty")  # an empty dir becomes ours
    assert made.returncode == 0, made.stderr
    assert (ctl.root / "srv/empty" / BACKUP_DIR_MARKER).is_file()
    assert ctl.ssh("stat -c %a /srv/empty", check=True).stdout.strip() == "700"
    assert (ctl.root / "srv/empty" / f"{made.stdout.strip()}.json").is_file()

    legacy = _create(lab, "before the marker existed")  # a catalog of an older jujubackup: only our names
    (backup_dir(ctl) / BACKUP_DIR_MARKER).unlink()
    again = jb(lab, "create")
    assert again.returncode == 0, again.stderr
    assert (backup_dir(ctl) / BACKUP_DIR_MARKER).is_file()
    assert catalog_ids(ctl) == sorted([legacy, again.stdout.strip()])


# ------------------------------------------------------------------ readers never take the lock (issue 11)

# A flock stand-in on the host's PATH (before /usr/bin): the first call that finds the trigger file
# holds what it locked for 10 minutes, as a reader stalled (or just slow) in the middle of its check.
HOLDING_FLOCK = r"""#!/bin/bash
/usr/bin/flock "$@"
rc=$?
if ((rc == 0)) && rm /etc/jujubackup-test-hold-flock 2>/dev/null; then
  sleep 600
fi
exit "$rc"
"""
TRIGGER = "/etc/jujubackup-test-hold-flock"


def test_list_and_status_never_take_the_lock_so_create_never_fails_because_of_them(lab_factory: Any) -> None:
    # list and the probe took the exclusive lock for an instant: a create/remove/upload starting in
    # that instant failed with exit 7
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    first = _create(lab, "first")
    ctl.ssh("cat >/usr/local/sbin/flock && chmod 0755 /usr/local/sbin/flock", input=HOLDING_FLOCK, check=True)
    ctl.ssh(f"touch {TRIGGER}", check=True)
    reader = subprocess.Popen(jb_argv(lab, "list", "--brief"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: reader.poll() is not None or ctl.ssh(f"test -e {TRIGGER}").returncode != 0, 120,
                 "list to end or to take the lock")
        ctl.ssh(f"rm -f {TRIGGER}", check=True)
        made = jb(lab, "create", "while a list ran")
        assert made.returncode == 0, made.stderr
        out, err = reader.communicate(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    assert out.split() == [first]
    assert catalog_ids(ctl) == sorted([first, made.stdout.strip()])


def test_list_and_status_while_create_holds_the_lock_show_it_and_create_goes_on(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    first = _create(lab, "first")
    gate_dumps(ctl)  # the create's mongodump waits at the gate: create holds the lock meanwhile
    creating = subprocess.Popen(
        jb_argv(lab, "create", "held"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "mongodump to run on ctl0")
        listed = jb(lab, "list", "--brief")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.split() == [first]
        assert "ctl0: locked: create by" in listed.stderr
        status = jb(lab, "status", "--format", "json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["lock_holder"]["operation"] == "create"
        restore = jb(lab, "restore", first, "--yes")  # restore takes the same lock: refused, nothing done
        assert restore.returncode == 7, restore.stderr
        assert "is locked: create by" in restore.stderr
        assert not (ctl.root / "var/lib/jujubackup-restore").exists()
        ctl.ssh(f"rm -f {HOLD_GATE}", check=True)
        out, err = creating.communicate(timeout=300)
    finally:
        if creating.poll() is None:
            creating.kill()
            creating.wait()
    assert creating.returncode == 0, err
    assert catalog_ids(ctl) == sorted([first, out.strip()])
    after = jb(lab, "list")
    assert after.returncode == 0 and "locked" not in after.stderr and "stale" not in after.stderr


def test_remove_a_backup_whose_record_is_invalid_by_its_full_id(lab_factory: Any) -> None:
    # an invalid record is skipped by list and refused by download/restore (exit 8); remove could not
    # name it at all (exit 5), so only an ssh + rm on the controller got rid of it
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    kept = _create(lab, "kept")
    broken = _create(lab, "broken")
    record = backup_dir(ctl) / f"{broken}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "size": "big"}))
    listed = jb(lab, "list", "--brief")
    assert listed.returncode == 0 and listed.stdout.split() == [kept]
    by_prefix = jb(lab, "remove", broken[:20], "--yes")  # never by a prefix or `latest`
    assert by_prefix.returncode == 5 and record.exists()
    asked = jb(lab, "remove", broken)
    assert asked.returncode == 2 and record.exists()  # it asks, as for any backup
    removed = jb(lab, "remove", broken, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == [broken] and "record is invalid" in removed.stderr
    assert not record.exists() and not (backup_dir(ctl) / f"{broken}.tar.gz").exists()
    assert catalog_ids(ctl) == [kept]
