"""prune against a controller catalog in the lab, through the CLI (issue 17: a seeded history of
40 backups over 90 days; the newest backup that verifies is always kept; the controller's lock)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from jujubackup.profiles import DEFAULT_BACKUP_DIR
from tests.integration.test_create import backup_dir, catalog_ids, jb
from tests.lab.lab import LabHost
from tests.unit.test_retention import history

pytestmark = pytest.mark.lab

POLICY = ("--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "3")
KEPT = {39, 38, 37, 36, 35, 34, 33, 30, 26, 13}  # tests/unit/test_retention.py CASES[0], worked out there


def seed_history(ctl: LabHost, real_id: str) -> list[str]:
    """Replace the catalog's one real backup with copies of it under the 40 IDs of
    test_retention.history() (the archive verifies against each record: same bytes, same SHA-256)."""
    d = backup_dir(ctl)
    archive = (d / f"{real_id}.tar.gz").read_bytes()
    record = json.loads((d / f"{real_id}.json").read_text())
    uuid = real_id.split(".", 1)[1]
    ids = []
    for candidate in history():
        new_id = f"{candidate.id.split('.', 1)[0]}.{uuid}"
        (d / f"{new_id}.tar.gz").write_bytes(archive)
        (d / f"{new_id}.json").write_text(json.dumps({**record, "ID": new_id, "archive": f"{new_id}.tar.gz"}))
        for suffix in (".tar.gz", ".json"):
            (d / f"{new_id}{suffix}").chmod(0o600)
        ids.append(new_id)
    (d / f"{real_id}.tar.gz").unlink()
    (d / f"{real_id}.json").unlink()
    return ids


def test_prune_a_seeded_history(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8")
    ctl = lab.host("ctl0")
    made = jb(lab, "create", "seed")
    assert made.returncode == 0, made.stderr
    ids = seed_history(ctl, made.stdout.strip())
    assert catalog_ids(ctl) == sorted(ids)

    # --dry-run: every backup listed with its action and why it is kept; nothing removed
    dry = jb(lab, "prune", *POLICY, "--dry-run", "--format", "json")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert doc["dry-run"] is True and doc["removed"] == []
    assert doc["policy"] == {"keep-daily": 7, "keep-weekly": 4, "keep-monthly": 3}
    rows = {r["id"]: r for r in doc["backups"]}
    assert {i for i, b in enumerate(ids) if rows[b]["action"] == "keep"} == KEPT
    assert all(rows[b]["action"] == "would remove" and rows[b]["reasons"] == []
               for i, b in enumerate(ids) if i not in KEPT)
    assert rows[ids[39]]["reasons"] == [
        "daily backup", "weekly backup", "monthly backup", "newest verified backup"]
    assert rows[ids[30]]["reasons"] == ["weekly backup"] and rows[ids[13]]["reasons"] == ["monthly backup"]
    assert rows[ids[39]]["verified"] == "yes"
    assert catalog_ids(ctl) == sorted(ids)
    table = jb(lab, "prune", *POLICY, "--dry-run")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("would remove") == 30 and "weekly backup" in table.stdout
    assert "10 kept, 30 would be removed" in table.stderr

    # without --yes and without a terminal: refused, nothing removed
    asked = jb(lab, "prune", *POLICY)
    assert asked.returncode == 2 and "--yes" in asked.stderr
    assert catalog_ids(ctl) == sorted(ids)

    # the controller's lock (flock on the backup dir, as create/remove/upload hold it; -o: the
    # lock goes with flock itself when it is killed): exit 7
    holder = ctl.ssh(f"nohup flock -o {DEFAULT_BACKUP_DIR} sleep 60 >/dev/null 2>&1 & echo $!")
    assert holder.stdout.strip().isdigit()
    try:
        time.sleep(0.5)
        locked = jb(lab, "prune", *POLICY, "--yes")
        assert locked.returncode == 7, locked.stderr
        assert "locked" in locked.stderr
        assert catalog_ids(ctl) == sorted(ids)
    finally:
        ctl.ssh(f"kill {holder.stdout.strip()}")

    pruned = jb(lab, "prune", *POLICY, "--yes", "--format", "yaml")
    assert pruned.returncode == 0, pruned.stderr
    assert catalog_ids(ctl) == sorted(ids[i] for i in KEPT)
    assert not (backup_dir(ctl) / f"{ids[0]}.tar.gz").exists()

    # the newest copy is damaged: keep-last 1 keeps it (the rule) and the newest that verifies
    (backup_dir(ctl) / f"{ids[39]}.tar.gz").write_bytes(b"damaged")
    broken = jb(lab, "prune", "--keep-last", "1", "--yes", "--format", "json")
    assert broken.returncode == 0, broken.stderr
    result = json.loads(broken.stdout)
    assert ids[39] in result["verify-failures"]
    assert catalog_ids(ctl) == sorted([ids[38], ids[39]])
    kept = {r["id"]: r["reasons"] for r in result["backups"] if r["action"] == "keep"}
    assert kept == {ids[39]: ["last backup"], ids[38]: ["newest verified backup"]}
