"""python-libjuju, the official Python Juju client, as the judge of a restore: tests run it (pinned in
requirements.txt, in its own venv .venv-libjuju: it needs paramiko<3, jujubackup paramiko>=3.4)
against the lab's API stand-in. Test code, never shipped."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.paths import REPO

HERE = Path(__file__).resolve().parent
VENV = REPO / ".venv-libjuju"
REQUIREMENTS = HERE / "requirements.txt"


def python() -> Path:
    """Return the venv's python with requirements.txt installed (made now if missing or stale, under
    a lock: labs run tests concurrently). Raise RuntimeError if pip fails."""
    stamp = VENV / "requirements.txt"
    with open(REPO / ".venv-libjuju.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != REQUIREMENTS.read_text():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
            res = subprocess.run([str(VENV / "bin/pip"), "install", "-q", "-r", str(REQUIREMENTS)],
                                 capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"cannot install {REQUIREMENTS}: {res.stderr[-2000:]}")
            stamp.write_text(REQUIREMENTS.read_text())
    return VENV / "bin/python"


def probe(juju_data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run probe.py ARGS with JUJU_DATA=juju_data; return the finished process (stdout: its JSON)."""
    env = {**os.environ, "JUJU_DATA": str(juju_data), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(python()), str(HERE / "probe.py"), *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def sees(juju_data: Path, *args: str) -> dict:
    """Run probe.py and return what libjuju saw. Raise AssertionError with libjuju's error if it failed."""
    res = probe(juju_data, *args)
    assert res.returncode == 0, res.stderr[-3000:]
    return dict(json.loads(res.stdout))
