"""Every lab profile (one per juju-db generation Juju ships, tests/lab/standins/versions.py) through the
CLI: create in all three modes, download, drill the download on a throwaway machine (isolated, every
check passes, the controller's database unchanged; on 3.x a second bootstrapped controller), power
the controller off and restore the download onto a fresh machine (2.x) and over a freshly
bootstrapped controller (boot0: every profile, the seed's own path); services running after each
step, the statepassword in no process's argv on the hosts and in no output, the replica set the new
address alone, harvest mode none in every model, and python-libjuju (2.9.49.1; 3.6.1.3 on juju-3.6)
listing the backup's models and machines with the backup's CA, and by controller name after
--update-client-config. On juju-3.6 the bare spare is refused (exit 6, nothing changed: no dqlite
node there). The deeper suites (test_create, test_transfer, test_restore) run on juju-2.9 and
juju-2.8, this one is the matrix over all five."""

from __future__ import annotations

import glob
import json
import re
import secrets
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jujubackup import profiles
from tests import libjuju
from tests.conftest import LabFactory
from tests.integration.test_restore import jb, juju_db, mongo, ok
from tests.lab import provision
from tests.lab.lab import LabHost
from tests.lab.standins import common, jujud
from tests.lab.standins.tools import OPLOG_GATE, OPLOG_GATE_REACHED

pytestmark = pytest.mark.lab

MODES = ("online", "quiesce", "stop")


def state_password(host: LabHost) -> str:
    conf = (host.root / f"var/lib/juju/agents/machine-{host.machine_id}/agent.conf").read_text()
    match = re.search(r"^statepassword: (\S+)$", conf, re.M)
    assert match
    return match.group(1)


def running(host: LabHost, profile: str, machine_id: str) -> list[str]:
    """Return `systemctl is-active` of juju-db and jujud-machine-N on host."""
    units = [profiles.profile_named(profile).db_service, f"jujud-machine-{machine_id}"]
    return host.ssh("systemctl is-active " + " ".join(units)).stdout.split()


@contextmanager
def argv_sampler(host: LabHost) -> Iterator[Path]:
    """Record every process's command line on host while the block runs; yield the file (on the
    workstation side of the host's root) holding the samples."""
    out = "root/cmdlines.txt"
    started = host.ssh(
        "nohup bash -c 'while :; do cat /proc/[0-9]*/cmdline 2>/dev/null | tr \"\\0\" \" \"; echo; "
        f"sleep 0.02; done' >/{out} 2>/dev/null </dev/null & echo $!"
    )
    pid = started.stdout.strip()
    assert pid.isdigit(), started.stderr
    try:
        yield host.root / out
    finally:
        host.ssh(f"kill {pid}")


ADDED_USER = "machine-7"
"""A controller machine's mongo user created during the online dump (as `juju enable-ha` does,
juju/juju mongo/admin.go SetAdminMongoPassword): an insert into admin.system.users, which every
--oplogReplay replays (MongoDB 3.2: any applyOps needs all privileges; 3.6+: insert on
admin.system.users, which Juju's roles lack)."""


def create_with_a_user_added(
    lab: Any, ctl: LabHost, args: tuple[str, ...]
) -> subprocess.CompletedProcess[str]:
    """Run `jujubackup create` whose mongodump waits at the lab's oplog gate (standins/tools.py
    OPLOG_GATE) while ADDED_USER is created; return the finished create."""
    gate = ctl.root / OPLOG_GATE.lstrip("/")
    markers = [ctl.root / "var/snap/juju-db/common" / OPLOG_GATE_REACHED,
               ctl.root / profiles.DEFAULT_BACKUP_DIR.lstrip("/") / ".tmp-*/juju-backup" / OPLOG_GATE_REACHED]
    gate.touch()
    result: list[subprocess.CompletedProcess[str]] = []
    worker = threading.Thread(target=lambda: result.append(jb(lab, *args)))
    worker.start()
    try:
        deadline = time.monotonic() + 300
        while not any(glob.glob(str(m)) for m in markers):
            assert worker.is_alive(), result
            assert time.monotonic() < deadline, "mongodump never reached the oplog gate"
            time.sleep(0.1)
        roles = json.dumps(common.JUJU_ROLES)
        out = mongo(ctl, [f'print(JSON.stringify(db.getSiblingDB("admin").runCommand({{"createUser": '
                          f'"{ADDED_USER}", "pwd": "{secrets.token_hex(12)}", "roles": {roles}}})))'])
        assert '"ok":1' in out, out
    finally:
        gate.unlink(missing_ok=True)
        for m in markers:
            for found in glob.glob(str(m)):
                Path(found).unlink(missing_ok=True)
    worker.join(900)
    return result[0]


def restore_onto(lab: Any, host: LabHost, archive: Path, ca: str, before: dict, tmp_path: Path,
                 outputs: list[str]) -> None:
    """Restore `archive` onto `host` (--update-client-config) and check it as a DR restore: juju-db
    and jujud active, the replica set = the new address alone, the backup's CA as juju-db's client
    CA on 4.4.30, harvest mode none in every model, python-libjuju by CA and by name."""
    profile = lab.profile
    restored = ok(jb(lab, "restore", "--archive", str(archive), "--target", host.name, "--yes",
                     "--update-client-config", env={"JUJU_DATA": str(lab.juju_data)}))
    outputs.append(restored.stdout + restored.stderr)
    assert f"install juju-db ({profile})" in restored.stdout
    # --oplogReplay ran with a role of its own (the lab's juju-db refuses the replay to Juju's roles
    # alone: tests/unit/test_standin_privileges.py), dropped after it: no role is left, and machine-0
    # holds Juju's roles and no more
    assert "role jujubackup-oplog-replay for load-db's oplog replay, granted to machine-0" in restored.stdout
    assert "role jujubackup-oplog-replay held by machine-0 for the replay, dropped after it" in (
        restored.stdout
    )
    admin = provision.read_db(host.root, profile, dbs=["admin"]).get("admin", {})
    assert admin.get("system.roles", []) == []
    (machine,) = [u for u in admin["system.users"] if u["user"] == "machine-0"]
    assert sorted(r["role"] for r in machine["roles"]) == sorted(r["role"] for r in common.JUJU_ROLES)
    assert ADDED_USER in [u["user"] for u in admin["system.users"]]  # replayed from oplog.bson
    assert running(host, profile, "0") == ["active", "active"]
    after = ok(jb(lab, "-H", host.name, "status", "--format", "json"))
    outputs.append(after.stdout + after.stderr)
    moved = json.loads(after.stdout)
    assert moved["profile"] == profile and moved["machine_id"] == "0"
    backup_controller = before["controllers"]["controllerSettings"]["settings"]["controller-uuid"]
    assert moved["controller_uuid"] == backup_controller
    assert [(m["name"], m["state"]) for m in moved["replset"]] == [(f"{host.ip}:37017", "PRIMARY")]
    harvest = {k: d["settings"]["provisioner-harvest-mode"] for k, d in juju_db(host)["settings"].items()}
    assert harvest == dict.fromkeys(before["settings"], "none")
    if provision.PROFILES[profile].generation.client_cert_required:
        # juju-db 4.4.30 as Juju runs it: ca.crt is the backup's CA and the client CA of mongod
        config = (host.root / "var/snap/juju-db/common/juju-db.config").read_text()
        assert "tlsCAFile = /var/snap/juju-db/common/ca.crt" in config
        assert (host.root / "var/snap/juju-db/common/ca.crt").read_text().strip() == ca.strip()
        assert moved["mongo_tls"]["client_cert"]
    # python-libjuju (2.9.49.1, or 3.6.1.3 on juju-3.6) with the backup's CA, and by name alone
    libjuju.assert_sees_backup(lab, host.ip, ca, before, tmp_path, by_name=True)


@pytest.mark.parametrize("profile", list(provision.PROFILES))
def test_create_download_and_disaster_recovery(lab_factory: LabFactory, tmp_path: Path, profile: str) -> None:
    juju3 = provision.PROFILES[profile].base  # 3.x: drill and restore over bootstrapped controllers
    lab = lab_factory(controllers=1, spares=2, bootstrapped_spares=2 if juju3 else 1, profile=profile)
    ctl, spare, boot = lab.host("ctl0"), lab.host("spare0"), lab.host("boot0")
    gen = provision.PROFILES[profile].generation
    password = state_password(ctl)
    outputs: list[str] = []
    # juju-db's users as Juju makes them: `admin` (bootstrap) and machine-0, Juju's four roles each
    users = provision.read_db(ctl.root, profile, dbs=["admin"])["admin"]["system.users"]
    assert {u["user"]: sorted(r["role"] for r in u["roles"]) for u in users} == dict.fromkeys(
        ("admin", "machine-0"), sorted(r["role"] for r in common.JUJU_ROLES)
    )

    with argv_sampler(ctl) as ctl_samples:
        status = ok(jb(lab, "-H", "ctl0", "status", "--format", "json"))
        facts = json.loads(status.stdout)
        assert (facts["profile"], facts["mongo_version"], facts["shell_version"]) == (
            profile, gen.server, gen.server
        )
        assert facts["mongo_tls"]["client_cert"] == (ctl.root / "var/snap/juju-db/common/ca.crt").exists()
        outputs.append(status.stdout + status.stderr)
        ids = []
        for mode in MODES:
            args = ("-H", "ctl0", "-v", "create", f"{mode} on {profile}", "--mode", mode)
            # online: a controller machine user added while mongodump runs, in oplog.bson only
            created = ok(create_with_a_user_added(lab, ctl, args) if mode == "online" else jb(lab, *args))
            outputs.append(created.stdout + created.stderr)
            ids.append(created.stdout.strip().splitlines()[-1])
            assert running(ctl, profile, "0") == ["active", "active"], mode
        dest = tmp_path / "backups"
        downloaded = ok(jb(lab, "-H", "ctl0", "download", ids[0], "--dir", str(dest)))
        outputs.append(downloaded.stdout + downloaded.stderr)
    archive = dest / f"{ids[0]}.tar.gz"
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "juju-backup/dump/juju/machines.bson" in names and "juju-backup/root.tar" in names
    assert "juju-backup/dump/oplog.bson" in names  # online: mongodump --oplog

    before = juju_db(ctl)
    junit = tmp_path / "drill.xml"
    drill_target = "boot1" if juju3 else "spare1"  # a bare 3.x machine has no dqlite node
    drilled = ok(jb(lab, "drill", "--archive", str(archive), "--target", drill_target, "--junit", str(junit)))
    outputs.append(drilled.stdout + drilled.stderr)
    assert 'failures="0"' in junit.read_text() and 'errors="0"' in junit.read_text()
    assert juju_db(ctl) == before  # the drill never touched the controller
    conf = jujud.parse_agent_conf((ctl.root / "var/lib/juju/agents/machine-0/agent.conf").read_text())
    ca = str(conf["cacert"])
    ctl.power_off()
    with argv_sampler(spare) as spare_samples, argv_sampler(boot) as boot_samples:
        if juju3:
            # Juju 3.x: no dqlite node on a bare machine, so no API ever (README "dqlite")
            refused = jb(lab, "restore", "--archive", str(archive), "--target", "spare0", "--yes")
            assert refused.returncode == 6, refused.stderr
            assert "spare0 has no dqlite node" in refused.stderr
            assert "bootstrap a Juju 3.6 controller on spare0 first" in refused.stderr
            assert not (spare.root / "var/lib/juju/agents").exists()
            assert spare.ssh("systemctl is-active snap.juju-db.daemon").stdout.strip() != "active"
        else:
            restore_onto(lab, spare, archive, ca, before, tmp_path, outputs)
        # the seed's path: `juju bootstrap` made boot0 an empty controller of its own; restore over it
        planned = ok(jb(lab, "restore", "--archive", str(archive), "--target", "boot0", "--dry-run"))
        assert "boot0 is a freshly bootstrapped controller" in planned.stdout
        assert "only its controller model" in planned.stdout
        restore_onto(lab, boot, archive, ca, before, tmp_path, outputs)
    seen = "".join(f.read_text(errors="replace") for f in (ctl_samples, spare_samples, boot_samples))
    assert "--username machine-0" in seen  # the samplers saw mongodump / mongorestore run
    assert password not in seen
    for text in outputs:
        assert password not in text
