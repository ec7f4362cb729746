"""`python -m tests.lab.demo` — the main job, end to end, through the CLI against lab hosts (root only).

Boots a lab (one controller `ctl0` laid out as a Juju controller, one fresh machine `spare0`; on
Juju 3.x a freshly bootstrapped controller `boot0` instead, since a 3.x controller needs the dqlite
node only `juju bootstrap` makes), then: status → create → list → download → verify → power ctl0 off
(the disaster) → restore --archive … --target spare0|boot0 --yes (disaster recovery) → status of the
new controller.
The lab is always torn down at the end. Exit code: 0 when every step worked, else the failing step's.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lab.lab import Lab
from tests.lab.provision import PROFILES

JUJUBACKUP = [sys.executable, "-m", "jujubackup"]


class StepFailed(Exception):
    def __init__(self, title: str, returncode: int) -> None:
        super().__init__(f"{title} failed with exit {returncode}")
        self.returncode = returncode


def banner(text: str) -> None:
    """Print a step header on stderr."""
    print(f"\n\033[1m==> {text}\033[0m", file=sys.stderr, flush=True)


def jb(lab: Lab, title: str, *args: str, capture: bool = False) -> str:
    """Run `jujubackup -F <lab ssh config> ARGS`, showing the command; return stdout if `capture`.

    Raise StepFailed with the CLI's exit code when it fails.
    """
    cmd = [*JUJUBACKUP, "-F", str(lab.ssh_config), *args]
    banner(title)
    print("$ jujubackup " + " ".join(shlex.quote(a) for a in cmd[3:]), file=sys.stderr, flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, text=True, stdout=subprocess.PIPE if capture else None, check=False)
    if capture and proc.stdout:
        sys.stdout.write(proc.stdout)
    print(f"   ({time.monotonic() - started:.1f} s, exit {proc.returncode})", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise StepFailed(title, proc.returncode)
    return proc.stdout or ""


def run_demo(profile: str, workdir: Path) -> None:
    """Boot a lab and run the disaster-recovery story through the CLI. Raise StepFailed on failure."""
    juju3 = PROFILES[profile].base  # 3.x: restore over a bootstrapped controller (README "dqlite")
    target = "boot0" if juju3 else "spare0"
    banner(f"lab up: 1 controller ({profile}) + 1 " + ("freshly bootstrapped controller" if juju3 else
                                                       "fresh machine"))
    with Lab.create(controllers=1, spares=0 if juju3 else 1, bootstrapped_spares=1 if juju3 else 0,
                    profile=profile) as lab:
        for host in lab.hosts:
            print(f"   {host.name:8} {host.ip:12} {host.role}", file=sys.stderr)
        jb(lab, "what jujubackup sees on ctl0", "-H", "ctl0", "status")
        backup_id = jb(lab, "create a backup on ctl0", "-H", "ctl0", "create", "demo backup",
                       capture=True).strip().splitlines()[-1]
        jb(lab, "the controller's catalog", "-H", "ctl0", "list")
        archive = workdir / "demo-backup.tar.gz"
        jb(lab, "download it to this workstation", "-H", "ctl0", "download", backup_id, str(archive))
        jb(lab, "verify the downloaded archive", "verify", str(archive))
        banner("the disaster: ctl0 is powered off")
        lab.host("ctl0").power_off()
        jb(lab, f"plan the recovery onto {target} (dry run)", "restore", "--archive", str(archive),
           "--target", target, "--dry-run")
        jb(lab, f"disaster recovery onto {target}", "restore", "--archive", str(archive),
           "--target", target, "--yes")
        jb(lab, f"{target} is now the controller", "-H", target, "status")
        banner("done: the lab is torn down")


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the demo, return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.lab.demo", description=__doc__)
    parser.add_argument("--profile", default="juju-2.9", choices=list(PROFILES))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("demo: must run as root (the lab uses network namespaces and systemd-nspawn)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="jujubackup-demo-") as tmp:
        try:
            run_demo(args.profile, Path(tmp))
        except StepFailed as err:
            print(f"demo: {err}", file=sys.stderr)
            return err.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
