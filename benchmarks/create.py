"""Create benchmark (issue 3): `jujubackup create` on a lab controller with a ~1 GiB DB vs by hand.

    sudo .venv/bin/python -m benchmarks.create [--sizes 256MiB,1GiB,4GiB] [--runs 3] [--profile juju-2.9]
                                              [--out DIR] [--json] [--compare-source DIR]

For each size, boots a lab controller seeded with that much data, then measures in the same run,
round robin, median of `--runs` (wall time on this workstation, SSH connection included on both
sides):

  by hand        one `ssh ctl0 bash -s` doing what an operator would type: read the password from
                 agent.conf, `mongodump --oplog` (password on stdin), tar the state files into root.tar,
                 `tar -czf` (gzip) the lot; then remove it
  by hand pigz   the same with `tar -I pigz`: the best an operator would type, the baseline (issue 18)
  create         `jujubackup create --mode online` (probe, preflight, lock, dump, root.tar, metadata,
                 manifest with every member's SHA-256, pigz, SHA-1 + SHA-256 of the archive, catalog),
                 with its phases read off its progress lines (the remote script's elapsed seconds)

and, once per mode (online, quiesce, stop), the seconds each service was down as create measured it
on the host (manifest `service-windows`), plus whether juju-db's MainPID changed.

Goal: create within 1.1x of by hand with pigz (issue 18; 1.2x of by hand with gzip before);
zero juju-db downtime in online mode. `--out` writes the rows `python -m benchmarks.report` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    byte_compile,
    compare_source,
    parse_sizes,
    read_rss_kib,
    rss_wrapped,
    save,
)
from jujubackup import profiles
from tests.lab.clienttls import mongo_tls
from tests.lab.lab import Lab

GOAL = 1.1
PROGRESS = re.compile(r"^\[(\d+)\.(\d)s\] (.*)$")
PHASES = (
    ("dump", "dumping juju-db"),
    ("root.tar", "collecting state files"),
    ("metadata", "writing metadata"),
    ("compress+hash", "compressing the archive"),
)

BY_HAND = r"""
set -euo pipefail
d=$(mktemp -d {scratch}/byhand.XXXXXX)
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


def timed(argv: list[str], stdin: str | None = None,
          source: Path | None = None) -> tuple[float, subprocess.CompletedProcess[str], float]:
    """Run argv (with `source`: with the jujubackup package of that source tree first on the path);
    return (wall seconds, finished process, peak RSS MiB of argv's own process: the client's memory,
    issue 18). Raise RuntimeError if it fails."""
    env = {**os.environ, "PYTHONPATH": str(source)} if source else None
    with tempfile.NamedTemporaryFile(prefix="rss.") as rss_file:
        start = time.monotonic()
        done = subprocess.run(rss_wrapped(argv, Path(rss_file.name)), input=stdin,
                              capture_output=True, text=True, check=False, env=env, cwd=source)
        elapsed = time.monotonic() - start
        kib = read_rss_kib(Path(rss_file.name))
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done, kib / 1024


def by_hand(lab: Lab, compress: str) -> tuple[float, float]:
    """Run the by-hand backup with `compress` (tar's option); return (wall seconds, peak RSS MiB of
    the ssh client)."""
    ctl = lab.host("ctl0")
    profile = profiles.profile_named(ctl.profile)
    script = BY_HAND.format(
        mid=ctl.machine_id,
        mongodump=profile.mongodump,
        tls=" ".join(mongo_tls(ctl.profile, ctl.root).tools),
        compress=compress,
        # a snap's confined mongodump writes only under SNAP_COMMON: an operator stages there too
        scratch=profile.dump_scratch_dir or "/var/tmp",
    )
    seconds, _done, rss = timed(["ssh", "-F", str(lab.ssh_config), "ctl0", "bash -s"], stdin=script)
    return seconds, rss


def phases(stderr: str, wall: float) -> dict[str, float]:
    """Given create's stderr (its progress lines: `[12.3s] message`) and its wall time, return the
    seconds of each phase (PHASES, from its first line to the next phase's) and `client+connect`:
    the wall time not inside the remote script's clock."""
    marks: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        m = PROGRESS.match(line.strip())
        if m:
            marks.append((m[3], int(m[1]) + int(m[2]) / 10))
    if not marks:
        return {}
    starts = []
    for name, prefix in PHASES:
        at = next((t for msg, t in marks if msg.startswith(prefix)), None)
        if at is not None:
            starts.append((name, at))
    end = marks[-1][1]
    ends = [*starts[1:], ("end", end)]
    out = {name: round(nxt - at, 1) for (name, at), (_n, nxt) in zip(starts, ends, strict=True)}
    out["before-dump"] = round(starts[0][1], 1) if starts else 0.0
    out["client+connect"] = round(max(0.0, wall - end), 1)
    return out


def create(lab: Lab, mode: str,
           source: Path | None = None) -> tuple[float, dict[str, Any], dict[str, float], float]:
    """Run create in `mode` (with `source`: the jujubackup of that source tree); return (wall
    seconds, the stored record, its phases, peak RSS MiB of the client), then remove the backup."""
    base = [sys.executable, "-m", "jujubackup", "-F", str(lab.ssh_config), "-H", "ctl0"]
    seconds, done, rss = timed([*base, "create", f"bench {mode}", "--mode", mode, "--format", "json"],
                               source=source)
    record = json.loads(done.stdout)
    timed([*base, "-q", "remove", record["ID"], "--yes"])
    return seconds, record, phases(done.stderr, seconds), rss


def main_pid(lab: Lab, unit: str) -> int:
    out = lab.host("ctl0").ssh(f"systemctl show --property=MainPID --value {unit}.service", check=True)
    return int(out.stdout.strip() or 0)


def run(db_size: str, runs: int, profile_name: str, source: Path | None = None) -> dict[str, Any]:
    lab = Lab.create(controllers=1, profile=profile_name, db_size=db_size)
    try:
        profile = profiles.profile_named(profile_name)
        times: dict[str, list[float]] = {"by_hand_gzip": [], "by_hand_pigz": [], "create_online": []}
        create_phases: list[dict[str, float]] = []
        compare_phases: list[dict[str, float]] = []
        rss: dict[str, list[float]] = {"by_hand_pigz": [], "create_online": []}
        for _ in range(runs):
            times["by_hand_gzip"].append(by_hand(lab, "-z")[0])
            seconds, _record, took, peak = create(lab, "online")
            times["create_online"].append(seconds)
            create_phases.append(took)
            rss["create_online"].append(peak)
            seconds, peak = by_hand(lab, "-I pigz")
            times["by_hand_pigz"].append(seconds)
            rss["by_hand_pigz"].append(peak)
            if source is not None:  # an earlier version, in the same run: a change's before/after
                seconds, _record, took, _peak = create(lab, "online", source)
                times.setdefault("compare_create_online", []).append(seconds)
                compare_phases.append(took)
        downtime: dict[str, Any] = {}
        for mode in profiles.MODES:
            pid_before = main_pid(lab, profile.db_service)
            seconds, record, _took, _peak = create(lab, mode)
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
            "create_phases_s": create_phases,
            "peak_rss_mib": {k: round(max(v), 1) for k, v in rss.items()},
            **({"compare_source": str(source), "compare_phases_s": compare_phases,
                "compare_ratio_vs_by_hand_pigz": round(med["compare_create_online"] / med["by_hand_pigz"], 3)}
               if source is not None else {}),
            "load_average": os.getloadavg(),
            "per_mode": downtime,
        }
    finally:
        lab.teardown()


def rows(size: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Given one size's report, return its rows for benchmarks.report."""
    med = report["median_seconds"]
    gib = report["db_bytes"] / 2**30
    load = report.get("load_average")
    load_text = f"{load[0]:.1f}" if load else None  # 1-minute load at the end of the runs
    rss = report.get("peak_rss_mib", {})  # the largest of the runs: a peak, not a median

    def per_gib(seconds: float) -> float | None:
        return round(seconds / gib, 2) if gib else None

    return [
        {"metric": "create online vs by hand (pigz)", "size": size, "bytes": report["db_bytes"],
         "ratio": report["ratio_vs_by_hand_pigz"], "goal": GOAL, "better": "lower",
         "ours_s_per_gib": per_gib(med["create_online"]), "baseline_s_per_gib": per_gib(med["by_hand_pigz"]),
         "peak_rss_mib": rss.get("create_online"), "baseline_peak_rss_mib": rss.get("by_hand_pigz"),
         "load": load_text},
        {"metric": "create online vs by hand (gzip)", "size": size, "bytes": report["db_bytes"],
         "ratio": report["ratio_vs_by_hand_gzip"], "goal": None, "better": "lower",
         "ours_s_per_gib": per_gib(med["create_online"]), "baseline_s_per_gib": per_gib(med["by_hand_gzip"]),
         "load": load_text},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", "--db-size", default="1GiB", help="DB sizes, e.g. 256MiB,1GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="juju-2.9", choices=[p.name for p in profiles.PROFILES])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results dir (default {RESULTS})")
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--compare-source", type=compare_source, default=None,
                        help="also time create of the jujubackup package of this source tree (its own "
                        "jujubackup/remote_scripts: benchmarks/common.py compare_source) in the same run: a "
                        "change's before/after")
    args = parser.parse_args(argv)
    byte_compile(args.compare_source)
    by_size: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for label, size in parse_sizes(args.sizes):
        report = run(str(size), args.runs, args.profile, args.compare_source)
        report["db_bytes"] = size
        by_size[label] = report
        all_rows += rows(label, report)
        if not args.json:
            show(label, report, args.runs, args.profile)
    if not args.json and len(by_size) > 1:
        show_scale(all_rows)
    doc = {"runs": args.runs, "results": all_rows, "by_size": by_size}
    save(doc, "create", args.profile, args.out)
    print(json.dumps(doc, indent=2 if args.json else None))
    return 0


def show_scale(all_rows: list[dict[str, Any]]) -> None:
    """Print seconds per GiB and peak RSS per size, and how far s/GiB spreads (goal +-20 %)."""
    for row in all_rows:
        if row["metric"] == "create online vs by hand (pigz)":
            print(f"  {row['size']:>7}: create {row['ours_s_per_gib']} s/GiB, by hand pigz "
                  f"{row['baseline_s_per_gib']} s/GiB, client peak RSS {row['peak_rss_mib']} MiB")
    for side in ("ours_s_per_gib", "baseline_s_per_gib"):
        per = [r[side] for r in all_rows if r["metric"] == "create online vs by hand (pigz)" and r[side]]
        mid = statistics.median(per)
        print(f"  {side}: spread {max(abs(p - mid) / mid for p in per):.0%} of the median (goal 20 %)")


def show(label: str, report: dict[str, Any], runs: int, profile: str) -> None:
    """Print one size's report for a person."""
    med = report["median_seconds"]
    print(f"create benchmark: {profile}, DB {label}, median of {runs} run(s)")
    print(f"  by hand (dump + tar + gzip over ssh): {med['by_hand_gzip']:.1f} s")
    print(f"  by hand with pigz (baseline):         {med['by_hand_pigz']:.1f} s")
    print(f"  jujubackup create --mode online:      {med['create_online']:.1f} s")
    ratio = report["ratio_vs_by_hand_pigz"]
    verdict = "meets" if ratio <= GOAL else "misses"
    print(f"  ratio create / by hand with pigz: {ratio:.2f}x ({verdict} the {GOAL}x goal); "
          f"vs gzip by hand: {report['ratio_vs_by_hand_gzip']:.2f}x")
    for n, took in enumerate(report["create_phases_s"], 1):
        print(f"  run {n} phases: " + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))
    if "compare_source" in report:
        print(f"  {report['compare_source']}: create {med['compare_create_online']:.1f} s, "
              f"{report['compare_ratio_vs_by_hand_pigz']:.2f}x of by hand with pigz")
        for n, took in enumerate(report["compare_phases_s"], 1):
            print(f"  run {n} phases: " + ", ".join(f"{k} {v:.1f}" for k, v in took.items()))
    rss = report["peak_rss_mib"]
    print(f"  peak RSS MiB: create client {rss['create_online']:.0f}, "
          f"by hand's ssh {rss['by_hand_pigz']:.0f}")
    print(f"  load average at the end: {report['load_average']}")
    for mode, row in report["per_mode"].items():
        down = ", ".join(f"{u} {s}s" for u, s in row["down_seconds"].items()) or "no service stopped"
        print(
            f"  {mode:8} wall {row['wall_seconds']:.1f} s; down: {down}; "
            f"juju-db restarted: {row['juju_db_pid_changed']}"
        )


if __name__ == "__main__":
    sys.exit(main())
