"""Create benchmark (issue 3): `jujubackup create` on a lab controller with a ~1 GiB DB vs by hand.

    sudo .venv/bin/python -m benchmarks.create [--db-size 1G] [--runs 1] [--profile juju-2.9] [--json]

Boots a lab controller seeded with `--db-size` of data, then measures in the same run, round robin,
median of `--runs` (wall time on this workstation, SSH connection included on both sides):

  by hand        one `ssh ctl0 bash -s` doing what an operator would type: read the password from
                 agent.conf, `mongodump --oplog` (password on stdin), tar the state files into root.tar,
                 `tar -czf` (gzip) the lot; then remove it
  by hand pigz   the same with `tar -I pigz` (reference only)
  create         `jujubackup create --mode online` (probe, preflight, lock, dump, root.tar, metadata,
                 manifest with every member's SHA-256, pigz, SHA-1 + SHA-256 of the archive, catalog)

and, once per mode (online, quiesce, stop), the seconds each service was down as create measured it
on the host (manifest `service-windows`), plus whether juju-db's MainPID changed.

Goal: create within 1.2x of by hand; zero juju-db downtime in online mode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jujubackup import profiles
from tests.lab.lab import Lab

GOAL = 1.2

BY_HAND = r"""
set -euo pipefail
d=$(mktemp -d /var/tmp/byhand.XXXXXX)
pw=$(sed -n 's/^statepassword: //p' /var/lib/juju/agents/machine-{mid}/agent.conf)
printf '%s\n' "$pw" | {mongodump} --host 127.0.0.1 --port 37017 --username machine-{mid} \
  --authenticationDatabase admin {tls} --oplog --out "$d/juju-backup/dump" >/dev/null 2>&1
rm -rf "$d/juju-backup/dump/admin"
tar -C / -cf "$d/juju-backup/root.tar" var/lib/juju/agents/machine-{mid} var/lib/juju/tools \
  var/lib/juju/system-identity var/lib/juju/server.pem var/lib/juju/nonce.txt
tar -C "$d" {compress} -cf /var/tmp/byhand.tar.gz juju-backup
ls -l /var/tmp/byhand.tar.gz
rm -rf "$d" /var/tmp/byhand.tar.gz
"""


def jujubackup_bin() -> str:
    return str(Path(sys.executable).parent / "jujubackup")


def timed(argv: list[str], stdin: str | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run argv; return (wall seconds, finished process). Raise RuntimeError if it fails."""
    start = time.monotonic()
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done


def by_hand(lab: Lab, compress: str) -> float:
    ctl = lab.host("ctl0")
    profile = profiles.profile_named(ctl.profile)
    script = BY_HAND.format(
        mid=ctl.machine_id, mongodump=profile.mongodump, tls=" ".join(profile.tls_flags), compress=compress
    )
    seconds, _ = timed(["ssh", "-F", str(lab.ssh_config), "ctl0", "bash -s"], stdin=script)
    return seconds


def create(lab: Lab, mode: str) -> tuple[float, dict[str, Any]]:
    """Run create in `mode`; return (wall seconds, the stored record), then remove the backup."""
    base = [jujubackup_bin(), "-q", "-F", str(lab.ssh_config), "-H", "ctl0"]
    seconds, done = timed([*base, "create", f"bench {mode}", "--mode", mode, "--format", "json"])
    record = json.loads(done.stdout)
    timed([*base, "remove", record["ID"], "--yes"])
    return seconds, record


def main_pid(lab: Lab, unit: str) -> int:
    out = lab.host("ctl0").ssh(f"systemctl show --property=MainPID --value {unit}.service", check=True)
    return int(out.stdout.strip() or 0)


def run(db_size: str, runs: int, profile_name: str) -> dict[str, Any]:
    lab = Lab.create(controllers=1, profile=profile_name, db_size=db_size)
    try:
        profile = profiles.profile_named(profile_name)
        times: dict[str, list[float]] = {"by_hand_gzip": [], "by_hand_pigz": [], "create_online": []}
        for _ in range(runs):
            times["by_hand_gzip"].append(by_hand(lab, "-z"))
            times["create_online"].append(create(lab, "online")[0])
            times["by_hand_pigz"].append(by_hand(lab, "-I pigz"))
        downtime: dict[str, Any] = {}
        for mode in profiles.MODES:
            pid_before = main_pid(lab, profile.db_service)
            seconds, record = create(lab, mode)
            manifest = record["manifest"]
            downtime[mode] = {
                "wall_seconds": round(seconds, 2),
                "down_seconds": {u: w["seconds"] for u, w in manifest["service-windows"].items()},
                "juju_db_pid_changed": main_pid(lab, profile.db_service) != pid_before,
                "archive_bytes": record["size"],
            }
        med = {k: statistics.median(v) for k, v in times.items()}
        return {
            "profile": profile_name,
            "db_size": db_size,
            "runs": runs,
            "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
            "median_seconds": {k: round(v, 2) for k, v in med.items()},
            "ratio_vs_by_hand_gzip": round(med["create_online"] / med["by_hand_gzip"], 3),
            "ratio_vs_by_hand_pigz": round(med["create_online"] / med["by_hand_pigz"], 3),
            "goal": GOAL,
            "per_mode": downtime,
        }
    finally:
        lab.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db-size", default="1G")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", default="juju-2.9", choices=[p.name for p in profiles.PROFILES[:2]])
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args(argv)
    report = run(args.db_size, args.runs, args.profile)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    med = report["median_seconds"]
    print(f"create benchmark: {args.profile}, DB {args.db_size}, median of {args.runs} run(s)")
    print(f"  by hand (dump + tar + gzip over ssh): {med['by_hand_gzip']:.1f} s")
    print(f"  by hand with pigz (reference):        {med['by_hand_pigz']:.1f} s")
    print(f"  jujubackup create --mode online:      {med['create_online']:.1f} s")
    ratio = report["ratio_vs_by_hand_gzip"]
    verdict = "meets" if ratio <= GOAL else "misses"
    print(
        f"  ratio create / by hand: {ratio:.2f}x ({verdict} the {GOAL}x goal); "
        f"vs pigz by hand: {report['ratio_vs_by_hand_pigz']:.2f}x"
    )
    for mode, row in report["per_mode"].items():
        down = ", ".join(f"{u} {s}s" for u, s in row["down_seconds"].items()) or "no service stopped"
        print(
            f"  {mode:8} wall {row['wall_seconds']:.1f} s; down: {down}; "
            f"juju-db restarted: {row['juju_db_pid_changed']}"
        )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
