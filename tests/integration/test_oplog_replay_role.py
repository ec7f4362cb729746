"""The role `mongorestore --oplogReplay` runs with (remote_scripts/lib/replay-role.bash.j2: fresh-db
creates and grants it, load-db uses and drops it) is gone after the restore on every way out: here
load-db is killed (SIGKILL, no EXIT trap runs) while the role exists, and `--resume` replays with the
role the journal says is ready, then drops it. The lab's juju-db refuses the replay of a user added
during the dump to Juju's roles alone (tests/unit/test_standin_privileges.py), so the resumed restore
also shows machine-0 held the role for the replay."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import LabFactory
from tests.integration.test_profile_matrix import ADDED_USER, create_with_a_user_added
from tests.integration.test_restore import JOURNAL, active, db_unit, jb, ok
from tests.lab import provision
from tests.lab.cli import jb_start
from tests.lab.lab import LabHost
from tests.lab.standins import common
from tests.lab.standins.tools import RESTORE_OPLOG_GATE

pytestmark = pytest.mark.lab

ROLE = "jujubackup-oplog-replay"


def admin_db(host: LabHost) -> dict[str, list[dict]]:
    return provision.read_db(host.root, host.profile, dbs=["admin"]).get("admin", {})


def roles_of_machine_0(host: LabHost) -> list[str]:
    users = [u for u in admin_db(host).get("system.users", []) if u["user"] == "machine-0"]
    return sorted(r["role"] for u in users for r in u["roles"])


def kill_load_db_job(host: LabHost) -> None:
    """SIGKILL the process group of the detached job running restore-load-db (remote_scripts/
    detached.sh.j2: `bash <dir>/job.sh` in a group of its own), as an OOM kill would."""
    listing = host.ssh("ps -eo pgid=,args=").stdout.splitlines()
    groups = {line.split()[0] for line in listing if "job.sh" in line and "wrapper.sh" not in line}
    assert len(groups) == 1, listing
    (pgid,) = groups
    host.ssh(f"kill -KILL -- -{pgid}")


def test_a_load_db_killed_while_the_role_exists_then_resumed_drops_it(
    lab_factory: LabFactory, tmp_path: Path
) -> None:
    lab = lab_factory(controllers=1, spares=1, profile="juju-2.9")
    ctl, spare = lab.host("ctl0"), lab.host("spare0")
    created = ok(create_with_a_user_added(lab, ctl, ("-H", "ctl0", "create", "--mode", "online")))
    backup_id = created.stdout.strip().splitlines()[-1]
    ok(jb(lab, "-H", "ctl0", "download", backup_id, "--dir", str(tmp_path)))
    archive = tmp_path / f"{backup_id}.tar.gz"
    ctl.power_off()

    gate = spare.root / RESTORE_OPLOG_GATE.lstrip("/")
    gate.touch()
    client = jb_start(lab, "restore", "--archive", str(archive), "--target", "spare0", "--yes")
    try:
        deadline = time.monotonic() + 600
        started = spare.root / JOURNAL / "steps" / "load-db.started"
        while not started.exists():
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, "load-db never started"
            time.sleep(0.1)
        # machine-0 holds the role before mongorestore replays (fresh-db grants it; load-db makes it
        # itself when fresh-db did not: once, under a loaded CI machine, it was not yet held as
        # load-db.started appeared): the kill below must come while the role exists
        while ROLE not in roles_of_machine_0(spare):
            assert client.poll() is None, client.communicate()
            assert time.monotonic() < deadline, (
                f"machine-0 never held {ROLE}: {sorted(p.name for p in (spare.root / JOURNAL).iterdir())}")
            time.sleep(0.1)
        assert [r["role"] for r in admin_db(spare)["system.roles"]] == [ROLE]
        # mongorestore holds at the gate, before the replay
        while not any("job.sh" in line for line in spare.ssh("ps -eo args=").stdout.splitlines()):
            assert time.monotonic() < deadline, "load-db's job is not running"
            time.sleep(0.1)
        kill_load_db_job(spare)
    finally:
        gate.unlink(missing_ok=True)
    _, stderr = client.communicate(timeout=600)
    assert client.returncode != 0
    assert "load-db" in stderr
    # the killed step could not drop it: the role and the journal's record of it are left
    assert [r["role"] for r in admin_db(spare)["system.roles"]] == [ROLE]
    assert (spare.root / JOURNAL / "oplog-role").read_text().strip() == ROLE
    assert '"collection": "system.users"' in (spare.root / JOURNAL / "oplog-role.ready").read_text()

    resumed = ok(jb(lab, "restore", "--target", "spare0", "--resume", "--archive", str(archive)))
    assert "restore done" in resumed.stdout
    assert active(spare, db_unit(spare), "jujud-machine-0") == ["active", "active"]
    admin = admin_db(spare)
    assert admin.get("system.roles", []) == []
    assert roles_of_machine_0(spare) == sorted(r["role"] for r in common.JUJU_ROLES)
    assert ADDED_USER in [u["user"] for u in admin["system.users"]]  # replayed by the resumed step
    assert not (spare.root / JOURNAL).exists()
