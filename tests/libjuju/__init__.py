"""python-libjuju, the official Python Juju client, as the judge of a restore: tests run it against
the lab's API stand-in, pinned per Juju major version in its own venv: requirements.txt (2.9.49.1 for
2.x controllers, .venv-libjuju: it needs paramiko<3, jujubackup paramiko>=3.4) and requirements-3.txt
(3.6.1.3 for juju-3.6, .venv-libjuju3). Test code, never shipped."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.paths import REPO

HERE = Path(__file__).resolve().parent
# one venv per Juju major version: libjuju 2.9 speaks only to 2.x controllers, libjuju 3.x only to 3.x
VENVS = {2: REPO / ".venv-libjuju", 3: REPO / ".venv-libjuju3"}
REQUIREMENTS = {2: HERE / "requirements.txt", 3: HERE / "requirements-3.txt"}


def python(major: int = 2) -> Path:
    """Return the python of the libjuju venv for Juju `major`, its requirements installed (made now if
    missing or stale, under a lock: labs run tests concurrently). Raise RuntimeError if pip fails."""
    venv, requirements = VENVS[major], REQUIREMENTS[major]
    stamp = venv / "requirements.txt"
    with open(REPO / ".venv-libjuju.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != requirements.read_text():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            res = subprocess.run([str(venv / "bin/pip"), "install", "-q", "-r", str(requirements)],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"cannot install {requirements}: {res.stderr[-2000:]}")
            stamp.write_text(requirements.read_text())
    return venv / "bin/python"


def probe(juju_data: Path, *args: str, major: int = 2) -> subprocess.CompletedProcess[str]:
    """Run probe.py ARGS under the libjuju for Juju `major` with JUJU_DATA=juju_data; return the
    finished process (stdout: its JSON)."""
    env = {**os.environ, "JUJU_DATA": str(juju_data), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(python(major)), str(HERE / "probe.py"), *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def sees(juju_data: Path, *args: str, major: int = 2) -> dict:
    """Run probe.py and return what libjuju saw. Raise AssertionError with libjuju's error if it failed."""
    res = probe(juju_data, *args, major=major)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(json.loads(res.stdout))


def expected(db: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Given a `juju` database as {collection: {id: doc}}, return what libjuju should list: model
    names, and per model its machine ids and application names."""
    name_of = {m["_id"]: m["name"] for m in db["models"].values() if int(m.get("life", 0)) != 2}
    machines: dict[str, list[str]] = {name: [] for name in name_of.values()}
    apps: dict[str, list[str]] = {name: [] for name in name_of.values()}
    for m in db["machines"].values():
        machines[name_of[m["model-uuid"]]].append(m["machineid"])
    for a in db.get("applications", {}).values():
        apps[name_of[a["model-uuid"]]].append(a["name"])
    def order(mid: str) -> list[int]:
        return [int(p) for p in mid.split("/")]

    return {"models": sorted(name_of.values()),
            "machines": {n: sorted(ids, key=order) for n, ids in machines.items()},
            "applications": {n: sorted(a) for n, a in apps.items()}}


def assert_sees_backup(lab: Any, address: str, ca_pem: str, before: dict, tmp_path: Path, *,
                       by_name: bool) -> None:
    """python-libjuju logs in to the restored controller at `address` as admin (the lab's
    accounts.yaml password), trusting only `ca_pem` (the backup's CA), and lists the models,
    machines and applications of `before` (the backup's database); with `by_name` (the restore ran
    with --update-client-config) it also finds it by the name `lab` alone in the lab's juju_data. On
    a 2.8 profile libjuju 2.9's "2.9." server-version rule is widened to "2.8." (probe.py says why).
    Raise AssertionError otherwise."""
    work = tmp_path / "libjuju"
    work.mkdir(exist_ok=True)
    ca = work / "backup-ca.pem"
    ca.write_text(ca_pem)
    accounts = (lab.juju_data / "accounts.yaml").read_text()
    found = re.search(r"^    password: (\S+)$", accounts, re.M)
    assert found, "the lab's accounts.yaml has no password"
    password = work / "admin-password"
    fd = os.open(password, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(found.group(1))
    prefix = ["--server-prefix", "2.8."] if lab.profile.startswith("juju-2.8") else []
    major = 3 if lab.profile.startswith("juju-3") else 2
    want = expected(before)
    empty = work / "no-juju-data"
    empty.mkdir(exist_ok=True)
    direct = sees(empty, "--endpoint", f"{address}:17070", "--cacert", str(ca), "--password-file",
                  str(password), *prefix, major=major)
    assert {k: direct[k] for k in want} == want
    if by_name:
        named = sees(lab.juju_data, "--controller", "lab", *prefix, major=major)
        assert named["endpoint"] == f"{address}:17070"
        assert {k: named[k] for k in want} == want
