"""create against the lab, through the CLI (issue 3 "Done when").

Each test boots its own lab (lab_factory) and runs `.venv/bin/jujubackup -F <lab ssh_config> -H ctl0 ...`
as a subprocess; assertions read the host's files through the lab root and its services over ssh.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import bson
import pytest

from jujubackup.archive import verify_archive
from jujubackup.metadata import V1_KEYS
from jujubackup.profiles import DEFAULT_BACKUP_DIR, profile_named
from tests.lab.lab import Lab, LabHost
from tests.lab.provision import read_db

pytestmark = pytest.mark.lab

FIXTURE_KEYS = {
    "ID",
    "Checksum",
    "ChecksumFormat",
    "Size",
    "Stored",
    "Started",
    "Finished",
    "Notes",
    "Machine",
    "Hostname",
    "Version",
    "Series",
}  # the 2.8 fixture's keys, minus Environment (ModelUUID in v1) and the CA fields (never written)


# ----------------------------------------------------------------- helpers (also used by test_catalog)


def jujubackup_bin() -> str:
    """Return the jujubackup console script of the venv running the tests."""
    local = Path(sys.executable).parent / "jujubackup"
    return str(local) if local.exists() else (shutil.which("jujubackup") or "jujubackup")


def jb_argv(
    lab: Lab, *args: str, hosts: tuple[str, ...] = ("ctl0",), known_hosts: Path | None = None
) -> list[str]:
    argv = [jujubackup_bin(), "-F", str(lab.ssh_config), "--connect-timeout", "5"]
    for host in hosts:
        argv += ["-H", host]
    if known_hosts is not None:
        argv += ["--known-hosts", str(known_hosts)]
    return [*argv, *args]


def jb(
    lab: Lab,
    *args: str,
    hosts: tuple[str, ...] = ("ctl0",),
    known_hosts: Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI against the lab; return the finished process (stdout/stderr text)."""
    return subprocess.run(
        jb_argv(lab, *args, hosts=hosts, known_hosts=known_hosts),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def backup_dir(host: LabHost) -> Path:
    return host.root / DEFAULT_BACKUP_DIR.lstrip("/")


def main_pid(host: LabHost, unit: str) -> int:
    out = host.ssh(f"systemctl show --property=MainPID --value {unit}.service", check=True).stdout
    return int(out.strip() or 0)


def jujud_started(host: LabHost, timeout: float = 120) -> None:
    """Wait until the controller's jujud has finished starting (its peergrouper started, after the
    stand-in's mongo.EnsureServer restarted juju-db on a snap)."""
    log = host.root / "var/log/juju/machine-0.log"
    deadline = time.monotonic() + timeout
    while "peergrouper started" not in (log.read_text(errors="replace") if log.exists() else ""):
        assert time.monotonic() < deadline, "jujud did not finish starting"
        time.sleep(0.5)


def is_active(host: LabHost, unit: str) -> bool:
    return host.ssh(f"systemctl is-active {unit}.service").stdout.strip() == "active"


def units(host: LabHost) -> tuple[str, str]:
    """Return (juju-db unit, jujud unit) of a controller host."""
    profile = profile_named(host.profile)
    return profile.db_service, profile.jujud_service(str(host.machine_id))


def state_password(host: LabHost) -> str:
    conf = host.root / f"var/lib/juju/agents/machine-{host.machine_id}/agent.conf"
    for line in conf.read_text().splitlines():
        if line.startswith("statepassword:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise AssertionError("no statepassword in agent.conf")


def leftovers(host: LabHost) -> list[str]:
    """Return staging dirs / temp files create may leave in the backup dir (must be none)."""
    d = backup_dir(host)
    scratch = sorted(p.name for p in (host.root / "var/snap/juju-db/common").glob(".jujubackup-dump-*"))
    if not d.exists():
        return scratch
    staged = sorted(p.name for p in d.iterdir() if p.name.startswith(".tmp-") or p.name.endswith(".tmp"))
    return scratch + staged


def catalog_ids(host: LabHost) -> list[str]:
    d = backup_dir(host)
    return sorted(p.name[: -len(".json")] for p in d.glob("*.json")) if d.exists() else []


def read_archive(path: Path) -> dict[str, bytes]:
    """Return {member name: bytes} of every regular file of an archive."""
    out: dict[str, bytes] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                out[member.name] = f.read()
    return out


def services_running_again(host: LabHost, db_unit: str, jujud_unit: str) -> None:
    """Wait (at most 120 s) until juju-db and jujud are both active. On a snap, jujud restarts juju-db
    each time it starts (Juju's mongo.EnsureServer, imitated by the stand-in), so right after the
    services were restarted juju-db may be mid-restart: what must hold is that both run again."""
    wait_for(lambda: is_active(host, db_unit) and is_active(host, jujud_unit), 120,
             f"{db_unit} and {jujud_unit} to be active again on {host.name}")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def dump_running(host: LabHost) -> bool:
    out = host.ssh("cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '; true").stdout
    return "mongodump" in out and "--out" in out


def _by_id(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {repr(d.get("_id")): d for d in docs}


# --------------------------------------------------------------------------- each mode on each profile


@pytest.mark.parametrize("profile", ["juju-2.9", "juju-2.8"])
@pytest.mark.parametrize("mode", ["online", "quiesce", "stop"])
def test_create_each_mode(lab_factory: Any, profile: str, mode: str) -> None:
    lab = lab_factory(controllers=1, profile=profile)
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    jujud_started(ctl)  # jujud restarts juju-db while it starts: the PIDs to compare come after
    before = {u: main_pid(ctl, u) for u in (db_unit, jujud_unit)}
    password = state_password(ctl)

    done = jb(lab, "create", f"mode {mode} on {profile}", "--mode", mode, "--format", "json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    backup_id = shown["ID"]
    assert password not in done.stdout + done.stderr

    # stored: <ID>.tar.gz + <ID>.json, 0600, dir 0700, nothing else left behind
    d = backup_dir(ctl)
    archive, record_path = d / f"{backup_id}.tar.gz", d / f"{backup_id}.json"
    assert (d.stat().st_mode & 0o777) == 0o700
    assert (archive.stat().st_mode & 0o777) == 0o600 and (record_path.stat().st_mode & 0o777) == 0o600
    assert leftovers(ctl) == []
    record = json.loads(record_path.read_text())
    assert record == {k: v for k, v in shown.items() if k not in ("path", "archive_present")}

    # checksums: SHA-256 + Juju's SHA-1/base64, size
    data = archive.read_bytes()
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["Checksum"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert record["ChecksumFormat"] == "SHA-1, base64 encoded"
    assert record["Size"] == record["size"] == len(data)
    assert backup_id.endswith("." + record["ModelUUID"]) and backup_id[:15].replace("-", "").isdigit()

    # archive: layout, metadata keys, manifest verifies
    report = verify_archive(archive, expected_sha256=record["sha256"], expected_sha1_b64=record["Checksum"])
    assert report.ok, report.failures
    members = read_archive(archive)
    assert {"juju-backup/metadata.json", "juju-backup/root.tar", "juju-backup/manifest.json"} <= set(members)
    meta = json.loads(members["juju-backup/metadata.json"])
    assert FIXTURE_KEYS | set(V1_KEYS) <= set(meta)
    assert meta["FormatVersion"] == 1
    assert meta["Machine"] == meta["ControllerMachineID"] == "0"
    assert meta["Notes"] == f"mode {mode} on {profile}" and meta["HANodes"] == 1
    assert all(
        meta[k] not in ("", None) for k in ("ModelUUID", "ControllerUUID", "Version", "Series", "Hostname")
    )
    manifest = json.loads(members["juju-backup/manifest.json"])
    assert manifest["consistency"] == mode
    listed = {e["path"] for e in manifest["files"]}
    assert listed == {n[len("juju-backup/") :] for n in members} - {"manifest.json"}
    for entry in manifest["files"]:
        assert hashlib.sha256(members["juju-backup/" + entry["path"]]).hexdigest() == entry["sha256"]

    # root.tar: the state files of reference §3.5
    with tarfile.open(fileobj=io.BytesIO(members["juju-backup/root.tar"])) as root:
        names = set(root.getnames())
        link = root.getmember("var/lib/juju/tools/machine-0")
        assert link.issym() and link.linkname.startswith("/var/lib/juju/tools/")
    assert {
        "var/lib/juju/agents/machine-0/agent.conf",
        "var/lib/juju/server.pem",
        "var/lib/juju/system-identity",
        "var/lib/juju/nonce.txt",
    } <= names
    assert any(n.endswith("shared-secret") for n in names)
    assert not any(n.startswith(("var/lib/juju/db/", "var/snap/juju-db/common/db/")) for n in names)

    # dump: the lab DB's documents (admin and backups left out, as Juju does)
    dumped_dbs = {n.split("/")[2] for n in members if n.startswith("juju-backup/dump/") and n.count("/") == 3}
    assert "juju" in dumped_dbs and not dumped_dbs & {"admin", "backups"}
    live = read_db(ctl.root, profile, dbs=["juju"])["juju"]
    for coll, docs in live.items():
        dumped = bson.decode_all(members.get(f"juju-backup/dump/juju/{coll}.bson", b""))
        assert _by_id(dumped) == _by_id(docs), f"juju.{coll} differs"
    if mode != "stop":
        assert "juju-backup/dump/oplog.bson" in members

    # services: active again; which ones stopped depends on the mode
    after = {u: main_pid(ctl, u) for u in (db_unit, jujud_unit)}
    services_running_again(ctl, db_unit, jujud_unit)
    windows = manifest["service-windows"]
    if mode == "online":
        assert after == before and windows == {}
        assert manifest["db-unavailable-seconds"] == {db_unit: 0}
    elif mode == "quiesce":
        assert after[jujud_unit] != before[jujud_unit]
        assert set(windows) == {jujud_unit}  # jujubackup stopped jujud only
        if not profile_named(profile).snap:
            assert after[db_unit] == before[db_unit]
        # on a snap, jujud restarts juju-db itself when it starts again, after the dump (Juju's
        # mongo.EnsureServer at every agent start: snap set configpath + ManuallyRestart, 2.9 era)
    else:
        assert after[db_unit] != before[db_unit] and after[jujud_unit] != before[jujud_unit]
        assert set(windows) == {db_unit, jujud_unit}
        assert manifest["db-unavailable-seconds"][db_unit] > 0


def test_exclude_logs_leaves_the_logs_db_out(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8")
    ctl = lab.host("ctl0")
    assert "logs" in read_db(ctl.root, "juju-2.8", dbs=["logs"])
    done = jb(lab, "create", "--exclude-logs")
    assert done.returncode == 0, done.stderr
    backup_id = done.stdout.strip()
    members = read_archive(backup_dir(ctl) / f"{backup_id}.tar.gz")
    assert not any(n.startswith("juju-backup/dump/logs/") for n in members)
    assert any(n.startswith("juju-backup/dump/juju/") for n in members)
    assert json.loads(members["juju-backup/manifest.json"])["excluded-dbs"] == ["admin", "backups", "logs"]


# --------------------------------------------------------------------------- failure paths


FREEZE = r"""
for p in /proc/[0-9]*; do
  mapfile -d '' args <"$p/cmdline" 2>/dev/null || continue
  if [[ ${args[0]:-} == *mongodump || ${args[1]:-} == *mongodump ]]; then
    kill -STOP "${p#/proc/}"
    echo "${p#/proc/}"
  fi
done
"""


HOLD_GATE = "/etc/jujubackup-lab-hold-mongodump"  # the stand-in mongodump waits while it exists


def gate_dumps(host: LabHost) -> None:
    """Make the host's next mongodump wait after connecting, so it is surely in progress when frozen."""
    host.ssh(f"touch {HOLD_GATE}", check=True)


def freeze_dump(host: LabHost) -> None:
    """SIGSTOP every running mongodump on the host: a dump that makes no progress (slow or hung).

    Then open the gate (gate_dumps): a thawed dump carries on normally.
    """
    frozen = host.ssh("bash -s", input=FREEZE, timeout=60, check=True).stdout.split()
    host.ssh(f"rm -f {HOLD_GATE}", check=True)
    assert frozen, "no mongodump to freeze"


@pytest.mark.parametrize("mode", ["stop", "quiesce"])
def test_connection_killed_mid_dump_restores_services_and_registers_nothing(
    lab_factory: Any, mode: str
) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    gate_dumps(ctl)  # mongodump waits at the gate until freeze_dump has it
    proc = subprocess.Popen(
        jb_argv(lab, "create", "--mode", mode),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "mongodump to run on ctl0")
        freeze_dump(ctl)  # the dump stays in progress however fast the machine is
        assert not is_active(ctl, jujud_unit)  # both modes have jujud down during the dump
        assert is_active(ctl, db_unit) == (mode == "quiesce")
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its SSH connection vanish
        proc.wait(timeout=10)
        killed_at = time.monotonic()
        wait_for(
            lambda: is_active(ctl, db_unit) and is_active(ctl, jujud_unit),
            30,
            "juju-db and jujud to be active again",
        )
        assert time.monotonic() - killed_at <= 30
        wait_for(lambda: leftovers(ctl) == [] and not dump_running(ctl), 30, "temp files and the dump to go")
        assert catalog_ids(ctl) == []
        assert not list(backup_dir(ctl).glob("*.tar.gz"))
        assert not (backup_dir(ctl) / ".jujubackup.lock").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_two_concurrent_creates_one_is_locked_out(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    gate_dumps(ctl)  # mongodump waits at the gate until freeze_dump has it
    first = subprocess.Popen(
        jb_argv(lab, "create", "first"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "the first create's mongodump")
        freeze_dump(ctl)  # the first create holds the lock however fast the dump is
        second = jb(lab, "create", "second")
        ctl.ssh("bash -s", input=FREEZE.replace("-STOP", "-CONT"), timeout=60, check=True)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert second.returncode == 7, second.stderr
    assert "locked" in second.stderr and "create by" in second.stderr and "pid" in second.stderr
    assert catalog_ids(ctl) == [out.strip()]


def test_stale_lock_record_is_reported_and_create_goes_on(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    d = backup_dir(ctl)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = {
        "operation": "create",
        "holder": "old@ws jujubackup create",
        "pid": 999999,
        "started": "2026-01-01T00:00:00Z",
    }
    (d / ".jujubackup.lock").write_text(json.dumps(stale))
    done = jb(lab, "create")
    assert done.returncode == 0, done.stderr
    assert "stale lock" in done.stderr and "old@ws jujubackup create" in done.stderr
    assert not (d / ".jujubackup.lock").exists()


def test_small_backup_dir_is_refused_with_need_and_have(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    mounted = ctl.ssh(
        f"mkdir -p {DEFAULT_BACKUP_DIR} && mount -t tmpfs -o size=16m,mode=0700 tmpfs {DEFAULT_BACKUP_DIR}"
    )
    assert mounted.returncode == 0, mounted.stderr
    try:
        db_unit, jujud_unit = units(ctl)
        before = {u: main_pid(ctl, u) for u in (db_unit, jujud_unit)}
        done = jb(lab, "create", "--mode", "quiesce")
        assert done.returncode == 6, done.stderr
        assert "need 5.0 GiB" in done.stderr and "have 16.0 MiB" in done.stderr
        assert "--force" in done.stderr
        assert {u: main_pid(ctl, u) for u in (db_unit, jujud_unit)} == before
        assert ctl.ssh(f"ls -A {DEFAULT_BACKUP_DIR}").stdout.strip() == ""
    finally:
        ctl.ssh(f"umount {DEFAULT_BACKUP_DIR}")


def test_unknown_host_key_is_refused(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory(controllers=1)
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = jb(lab, "create", known_hosts=empty)
    assert done.returncode == 3, done.stderr
    assert "ssh-keygen" in done.stderr or "host key" in done.stderr
    assert catalog_ids(lab.host("ctl0")) == []


def test_statepassword_never_in_argv_or_output(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8", db_size="60M")
    ctl = lab.host("ctl0")
    password = state_password(ctl)
    sampler = ctl.ssh(
        "nohup bash -c 'for i in $(seq 3000); do for f in /proc/[0-9]*/cmdline; do "
        'tr "\\0" " " <"$f" 2>/dev/null; echo; done; sleep 0.01; done\' '
        ">/root/cmdlines.txt 2>/dev/null </dev/null & echo $!"
    )
    sampler_pid = sampler.stdout.strip()
    assert sampler_pid.isdigit(), sampler.stderr
    try:
        outputs = []
        for mode in ("online", "stop"):
            done = jb(lab, "-v", "create", "--mode", mode, "--format", "json")
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout + done.stderr)
        status = jb(lab, "status", "--format", "json")
        outputs.append(status.stdout + status.stderr)
    finally:
        ctl.ssh(f"kill {sampler_pid}")
    samples = (ctl.root / "root/cmdlines.txt").read_text(errors="replace")
    assert "mongodump" in samples and "--username machine-0" in samples  # the sampler saw the dumps
    assert password not in samples
    for text in outputs:
        assert password not in text
    for path in backup_dir(ctl).glob("*.json"):
        assert password not in path.read_text()


# --------------------------------------------------------------------------- HA


def test_ha_first_host_down_uses_the_second(lab_factory: Any) -> None:
    lab = lab_factory(controllers=3, profile="juju-2.9")
    lab.host("ctl0").power_off()
    done = jb(lab, "create", "ha", "--format", "json", hosts=("ctl0", "ctl1", "ctl2"))
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)
    assert "using root@ctl1" in done.stderr
    assert meta["HANodes"] == 3
    assert meta["Machine"] == meta["ControllerMachineID"] == "1"
    assert catalog_ids(lab.host("ctl1")) == [meta["ID"]]

    # ctl0 is back, with an empty catalog: the verbs that name a backup find it on ctl1
    lab.host("ctl0").power_on()
    hosts = ("ctl0", "ctl1", "ctl2")
    info = jb(lab, "info", meta["ID"], "--format", "json", hosts=hosts)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["ID"] == meta["ID"] and "using root@ctl1" in info.stderr
    verified = jb(lab, "verify", meta["ID"], hosts=hosts)
    assert verified.returncode == 0, verified.stderr
    missing = jb(lab, "info", "20200101-000000.00000000-0000-0000-0000-000000000000", hosts=hosts)
    assert missing.returncode == 5, missing.stderr
    assert "not found on any of the 3 controllers" in missing.stderr
    newer = jb(lab, "create", "newer", hosts=("ctl2",))
    assert newer.returncode == 0, newer.stderr
    newer_id = newer.stdout.strip().splitlines()[-1]
    latest = jb(lab, "info", "latest", "--format", "json", hosts=hosts)
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["ID"] == newer_id  # the newest of all catalogs, not ctl1's
    listed = jb(lab, "list", "--format", "json", hosts=hosts)
    assert listed.returncode == 0, listed.stderr
    assert [(r["ID"], r["controllers"]) for r in json.loads(listed.stdout)] == [
        (meta["ID"], ["ctl1"]),
        (newer_id, ["ctl2"]),
    ]
    for name in hosts:
        assert f"catalog of {name}:" in listed.stderr  # every controller's catalog was read
    removed = jb(lab, "remove", meta["ID"], newer_id[:20], "--yes", hosts=hosts)  # held by ctl1, ctl2
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == [meta["ID"], newer_id]
    assert catalog_ids(lab.host("ctl1")) == [] and catalog_ids(lab.host("ctl2")) == []


def test_status_shows_the_controller(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8")
    done = jb(lab, "status", "--format", "json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert (facts["profile"], facts["machine_id"], facts["juju_version"]) == ("juju-2.8", "0", "2.8.10")
    assert facts["series"] == "xenial" and facts["mongo_version"].startswith("3.2")
    assert {s["name"]: s["active_state"] for s in facts["services"]} == {
        "juju-db": "active",
        "jujud-machine-0": "active",
    }
    assert [m["state"] for m in facts["replset"]] == ["PRIMARY"] and facts["replset"][0]["machine_id"] == "0"
    assert facts["free_bytes"] > 0 and facts["estimate_bytes"] > 0
    tabular = jb(lab, "status")
    assert tabular.returncode == 0 and "juju-2.8" in tabular.stdout and "PRIMARY" in tabular.stdout


def test_create_where_systemd_run_is_missing_runs_its_job_under_setsid(lab_factory: Any) -> None:
    """Without systemd-run the job runs under setsid(1), without `--fork`: xenial's util-linux 2.27
    lacks it (the lab's xenial setsid refuses it, tests/lab/release_gates.py)."""
    lab = lab_factory(controllers=1, profile="juju-2.8")
    ctl = lab.host("ctl0")
    ctl.ssh("mv /usr/bin/systemd-run /usr/lib/jujubackup-lab/systemd-run.hidden", check=True)
    done = jb(lab, "create", "under setsid", "--format", "json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (ctl.root / DEFAULT_BACKUP_DIR.lstrip("/") / f"{record['ID']}.json").is_file()
    assert ctl.ssh("systemctl is-active juju-db jujud-machine-0").stdout.split() == ["active", "active"]


def test_upstart_controller_is_refused(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    (ctl.root / "etc/init").mkdir(parents=True, exist_ok=True)
    (ctl.root / "etc/init/juju-db.conf").write_text("# upstart job\n")
    done = jb(lab, "create")
    assert done.returncode == 6, done.stderr
    assert "1.x" in done.stderr and "upstart" in done.stderr
    assert catalog_ids(ctl) == []


# --------------------------------------------------------------------------- QA fixes (issue 3 follow-up)

PINNED = r"""
import sys
from datetime import datetime, timezone
import jujubackup.operations.create as create_mod
from jujubackup.cli import main

class Pinned(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 11, 26, 7, 0, 0, tzinfo=timezone.utc)

create_mod.datetime = Pinned
sys.argv[0] = "jujubackup"
sys.exit(main())
"""


def pinned_argv(lab: Lab, *args: str) -> list[str]:
    """Return argv running the CLI with the client clock pinned (every create gets the same ID)."""
    return [sys.executable, "-c", PINNED, *jb_argv(lab, *args)[1:]]


def test_same_id_never_deletes_the_stored_backup(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    first = subprocess.run(pinned_argv(lab, "create", "first"), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    backup_id = first.stdout.strip()
    stored = (backup_dir(ctl) / f"{backup_id}.tar.gz").read_bytes()
    again = subprocess.run(pinned_argv(lab, "create", "again"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 6, again.stderr
    assert f"a backup with ID {backup_id} already exists" in again.stderr
    assert (backup_dir(ctl) / f"{backup_id}.tar.gz").read_bytes() == stored
    assert catalog_ids(ctl) == [backup_id] and leftovers(ctl) == []


def test_two_concurrent_stop_creates_with_the_same_id(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    gate_dumps(ctl)  # mongodump waits at the gate until freeze_dump has it
    first = subprocess.Popen(
        pinned_argv(lab, "create", "first", "--mode", "stop"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "the first create's mongodump")
        freeze_dump(ctl)
        second = subprocess.run(
            pinned_argv(lab, "create", "second", "--mode", "stop"),
            capture_output=True,
            text=True,
            timeout=600,
        )
        ctl.ssh("bash -s", input=FREEZE.replace("-STOP", "-CONT"), timeout=60, check=True)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 7, second.stderr
    assert first.returncode == 0, err
    backup_id = out.strip()
    assert catalog_ids(ctl) == [backup_id] and leftovers(ctl) == []
    record = json.loads((backup_dir(ctl) / f"{backup_id}.json").read_text())
    report = verify_archive(backup_dir(ctl) / f"{backup_id}.tar.gz", expected_sha256=record["sha256"])
    assert report.ok, report.failures
    services_running_again(ctl, db_unit, jujud_unit)


JOB_PIDS = r"""
for p in /proc/[0-9]*; do
  mapfile -d '' args <"$p/cmdline" 2>/dev/null || continue
  if [[ ${args[0]:-} == /bin/bash && ${args[1]:-} == /run/jujubackup/create-*/job.sh ]]; then
    read -r -a st <"$p/stat" || continue
    if [[ ${st[4]} == "${p#/proc/}" ]]; then  # the job itself: its process group's leader
      echo "${p#/proc/}"
    fi
  fi
done
"""


def test_job_sigkilled_mid_dump_the_supervisor_restarts_services_and_cleans_up(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    gate_dumps(ctl)  # mongodump waits at the gate until freeze_dump has it
    proc = subprocess.Popen(
        jb_argv(lab, "create", "--mode", "stop"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "mongodump to run on ctl0")
        freeze_dump(ctl)
        assert not is_active(ctl, db_unit) and not is_active(ctl, jujud_unit)
        assert leftovers(ctl)  # the staging and the snap scratch dump exist
        pids = ctl.ssh("bash -s", input=JOB_PIDS, timeout=60, check=True).stdout.split()
        assert len(pids) == 1, pids
        ctl.ssh(f"kill -KILL {pids[0]}", check=True)  # as the OOM killer would
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    services_running_again(ctl, db_unit, jujud_unit)
    assert leftovers(ctl) == [] and catalog_ids(ctl) == [] and out == ""
    assert "the backup job died" in err  # the cause, from the supervisor
    assert f"restarted what the backup had stopped: {db_unit}, {jujud_unit}" in err  # what it did
    assert "no service had been stopped" not in err
    later = jb(lab, "create")
    assert later.returncode == 0, later.stderr
    assert "stale lock" in later.stderr  # the dead run's holder record is reported


def test_job_sigkilled_with_a_space_in_the_backup_dir_removes_only_its_staging(lab_factory: Any) -> None:
    # the supervisor once split its cleanup list on blanks: "/var/lib/juju/backups old/.tmp-…" made it
    # remove /var/lib/juju/backups, every stored backup (issue 11)
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    first = jb(lab, "create")
    assert first.returncode == 0, first.stderr
    stored = sorted(p.name for p in backup_dir(ctl).iterdir())
    spaced = f"{DEFAULT_BACKUP_DIR} old"
    spaced_dir = ctl.root / spaced.lstrip("/")
    gate_dumps(ctl)
    proc = subprocess.Popen(
        jb_argv(lab, "create", "--mode", "stop", "--backup-dir", spaced),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "mongodump to run on ctl0")
        freeze_dump(ctl)
        assert [p.name for p in spaced_dir.glob(".tmp-*")]  # the staging dir exists
        pids = ctl.ssh("bash -s", input=JOB_PIDS, timeout=60, check=True).stdout.split()
        assert len(pids) == 1, pids
        ctl.ssh(f"kill -KILL {pids[0]}", check=True)  # before its own EXIT trap can run
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    assert "the backup job died" in err
    assert sorted(p.name for p in backup_dir(ctl).iterdir()) == stored  # the first word's dir untouched
    assert catalog_ids(ctl) == [first.stdout.strip()]
    assert spaced_dir.is_dir() and not [p.name for p in spaced_dir.iterdir() if p.name.startswith(".tmp-")]
    assert not [p.name for p in spaced_dir.iterdir() if p.name.endswith(".json.tmp")]
    services_running_again(ctl, db_unit, jujud_unit)


def test_client_killed_just_before_the_commit_registers_nothing(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9", db_size="300M")
    ctl = lab.host("ctl0")
    gate_dumps(ctl)  # mongodump waits at the gate until freeze_dump has it
    proc = subprocess.Popen(
        jb_argv(lab, "create"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: dump_running(ctl), 120, "mongodump to run on ctl0")
        freeze_dump(ctl)
        os.killpg(proc.pid, signal.SIGKILL)  # the client dies; the job goes on well within the watchdog
        out, _err = proc.communicate(timeout=10)
        ctl.ssh("bash -s", input=FREEZE.replace("-STOP", "-CONT"), timeout=60, check=True)
        wait_for(
            lambda: not (backup_dir(ctl) / ".jujubackup.lock").exists() and not dump_running(ctl),
            120,
            "the job to end",
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert out == b""  # the client never printed an ID ...
    assert catalog_ids(ctl) == [] and not list(backup_dir(ctl).glob("*.tar.gz"))  # ... so none is registered
    assert leftovers(ctl) == []


@pytest.mark.parametrize("mode", ["quiesce", "stop"])
def test_a_stopped_jujud_is_left_stopped(lab_factory: Any, mode: str) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.8")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    ctl.ssh(f"systemctl stop {jujud_unit}.service", check=True)
    done = jb(lab, "create", "--mode", mode)
    assert done.returncode == 0, done.stderr
    assert f"{jujud_unit} was already stopped" in done.stderr
    assert f"{jujud_unit} was down" not in done.stderr
    assert not is_active(ctl, jujud_unit) and is_active(ctl, db_unit)
    record = json.loads((backup_dir(ctl) / f"{done.stdout.strip()}.json").read_text())
    assert jujud_unit not in record["manifest"]["service-windows"]


def test_missing_jujud_unit_is_refused_in_preflight(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    _db_unit, jujud_unit = units(ctl)
    ctl.ssh(
        f"systemctl stop {jujud_unit}.service; rm -f /etc/systemd/system/{jujud_unit}.service; "
        "systemctl daemon-reload",
        check=True,
    )
    for mode in ("quiesce", "stop"):
        done = jb(lab, "create", "--mode", mode)
        assert done.returncode == 6, done.stderr
        assert f"unit {jujud_unit}.service not found on ctl0" in done.stderr
    online = jb(lab, "create")
    assert online.returncode == 0, online.stderr
    assert f"unit {jujud_unit}.service not found on ctl0" in online.stderr
    assert catalog_ids(ctl) == [online.stdout.strip()]


def test_unfinished_restore_is_refused_and_shown(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    ctl.ssh(
        "mkdir -p -m 0700 /var/lib/jujubackup-restore/steps && "
        "touch /var/lib/jujubackup-restore/steps/stop.done",
        check=True,
    )
    done = jb(lab, "create")
    assert done.returncode == 6, done.stderr
    assert "unfinished restore on ctl0: run restore --resume or --rollback first" in done.stderr
    assert catalog_ids(ctl) == []
    status = jb(lab, "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["restore_journal"] == "/var/lib/jujubackup-restore"
    assert "unfinished restore on ctl0" in status.stderr
    tabular = jb(lab, "status")
    assert "unfinished restore" in tabular.stdout


@pytest.mark.parametrize("size", ["64k", "200k"])
def test_full_backup_dir_names_the_cause(lab_factory: Any, size: str) -> None:
    lab = lab_factory(controllers=1, profile="juju-2.9")
    ctl = lab.host("ctl0")
    db_unit, jujud_unit = units(ctl)
    mounted = ctl.ssh(
        f"mkdir -p {DEFAULT_BACKUP_DIR} && mount -t tmpfs -o size={size},mode=0700 tmpfs {DEFAULT_BACKUP_DIR}"
    )
    assert mounted.returncode == 0, mounted.stderr
    try:
        done = jb(lab, "create", "--mode", "quiesce", "--force")
        assert done.returncode == 4, done.stderr
        assert f"no space left on device in {DEFAULT_BACKUP_DIR}" in done.stderr
        assert "hint: free space" in done.stderr
        assert "write error" not in done.stderr.split("error: ")[-1]
        services_running_again(ctl, db_unit, jujud_unit)
        assert catalog_ids(ctl) == [] and leftovers(ctl) == []
    finally:
        ctl.ssh(f"umount {DEFAULT_BACKUP_DIR}")
