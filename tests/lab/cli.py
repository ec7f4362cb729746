"""Running the jujubackup CLI against a lab as an operator would (test code): `python -m jujubackup`
with the lab's ssh config, from the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]


def jb_argv(lab: Lab, *args: str) -> list[str]:
    """Return the command line of `jujubackup -F <the lab's ssh config> ARGS...`."""
    return [sys.executable, "-m", "jujubackup", "-F", str(lab.ssh_config), *args]


def jb_start(lab: Lab, *args: str, **popen: Any) -> subprocess.Popen[str]:
    """Start the CLI in the background (stdin /dev/null, stdout and stderr piped, text: each
    overridable through `popen`); the caller waits for it, or kills it."""
    settings: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE,
                                "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen(jb_argv(lab, *args), cwd=REPO, **settings)
