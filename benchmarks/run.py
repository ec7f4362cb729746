"""Fleet-run benchmark (issue 17): `jujubackup run` for one controller vs create + download by hand.

    sudo .venv/bin/python -m benchmarks.run [--sizes 256MiB,1GiB] [--runs 3] [--profile juju-2.9] [--out DIR]

For each size, boots a lab controller seeded with that much data, then measures in the same run,
round robin, median of `--runs` (wall time on this workstation):

  by hand   `jujubackup create` then `jujubackup download ID --dir D`, two commands, no encryption
            (what an operator did before `run`)
  run       `jujubackup run --config F` for that one controller with one local store whose copies
            are age-encrypted to a recipient: create -> copy (encrypted while it streams) -> verify the
            copy -> prune (keep-last large: nothing pruned)

and the peak RSS (wait4 ru_maxrss) of the run process. Between runs the backups are removed from the
controller and the store (untimed). Goal: run <= 1.1x by hand with encryption on; peak client RSS
under 150 MiB (for a 2 GiB archive: `--sizes 2GiB`, disk and time permitting).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, byte_compile, parse_sizes, read_rss_kib, rss_wrapped, save
from jujubackup import profiles
from tests.lab.lab import Lab

GOAL = 1.1
RSS_GOAL_MIB = 150
JUJUBACKUP = str(Path(sys.executable).parent / "jujubackup")


def peak_rss_run(argv: list[str]) -> tuple[float, str, int]:
    """Run argv; return (wall seconds, stdout, peak RSS KiB of the process, read with wait4). Raise
    RuntimeError if it fails."""
    start = time.monotonic()
    with (tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err,
          tempfile.NamedTemporaryFile(prefix="rss.") as rss_file):
        proc = subprocess.Popen(rss_wrapped(argv, Path(rss_file.name)), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        code = proc.wait()
        elapsed = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv[:6])} failed ({code}): {err.read().decode()[-2000:]}")
        return elapsed, out.read().decode(), read_rss_kib(Path(rss_file.name))


def by_hand(lab: Lab, dest: Path) -> float:
    """create + download ID --dir dest; return seconds (the backup removed after, untimed)."""
    base = [JUJUBACKUP, "-q", "-F", str(lab.ssh_config), "-H", "ctl0"]
    start = time.monotonic()
    _s, out, _r = peak_rss_run([*base, "create", "bench by hand"])
    backup_id = out.strip().splitlines()[-1]
    peak_rss_run([*base, "download", backup_id, "--dir", str(dest)])
    seconds = time.monotonic() - start
    peak_rss_run([*base, "remove", backup_id, "--yes"])
    shutil.rmtree(dest)
    return seconds


def fleet_config(lab: Lab, work: Path, recipient: str) -> Path:
    """Write the one-controller fleet config with an age-encrypted local store; return its path."""
    config = work / "fleet.yaml"
    config.write_text(
        "parallel: 1\n"
        "defaults:\n  retention: {keep-last: 1000}\n  store-retention: {keep-last: 1000}\n"
        f"controllers:\n  bench:\n    hosts: [ctl0]\n    ssh: {{config: {lab.ssh_config}}}\n"
        f"stores:\n  vault: {{kind: local, path: {work / 'vault'}, encrypt-to: [{recipient}]}}\n"
    )
    return config


def fleet_run(lab: Lab, config: Path, vault: Path) -> tuple[float, int, dict[str, Any]]:
    """`run --config`; return (seconds, peak RSS KiB, its JSON summary); then remove what it made."""
    seconds, out, rss = peak_rss_run([JUJUBACKUP, "-q", "--format", "json", "run", "--config", str(config)])
    summary = json.loads(out)
    base = [JUJUBACKUP, "-q", "-F", str(lab.ssh_config), "-H", "ctl0"]
    listed = json.loads(peak_rss_run([*base, "--format", "json", "list"])[1])
    ids = [b["ID"] for b in listed] if isinstance(listed, list) else []
    if ids:
        peak_rss_run([*base, "remove", *ids, "--yes"])
    shutil.rmtree(vault, ignore_errors=True)
    return seconds, rss, summary


def run(size: int, runs: int, profile: str) -> dict[str, Any]:
    """Boot the lab with `size` of data, measure both ways round robin; return the results."""
    with Lab.create(controllers=1, profile=profile, db_size=size) as lab, \
            tempfile.TemporaryDirectory(prefix="bench-run-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        key = work / "age.key"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                                   text=True).stdout.strip()
        config = fleet_config(lab, work, recipient)
        hand, ours, rss = [], [], []
        summary: dict[str, Any] = {}
        for _ in range(runs):
            hand.append(by_hand(lab, work / "hand"))
            seconds, kib, summary = fleet_run(lab, config, work / "vault")
            ours.append(seconds)
            rss.append(kib / 1024)
        ratio = statistics.median(ours) / statistics.median(hand)
        return {
            "profile": profile,
            "db_bytes": size,
            "runs": runs,
            "by_hand_s": [round(x, 2) for x in hand],
            "run_s": [round(x, 2) for x in ours],
            "median_by_hand_s": round(statistics.median(hand), 2),
            "median_run_s": round(statistics.median(ours), 2),
            "ratio": round(ratio, 3),
            "goal": GOAL,
            "peak_rss_MiB": round(max(rss), 1),
            "last_summary": summary,
        }


def rows(label: str, size: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Given one size's result, return its rows for benchmarks.report."""
    gib = size / 2**30
    return [
        {"metric": "run (age-encrypted store) vs create+download", "size": label, "bytes": size,
         "ratio": result["ratio"], "goal": GOAL, "better": "lower",
         "ours_s_per_gib": round(result["median_run_s"] / gib, 2),
         "baseline_s_per_gib": round(result["median_by_hand_s"] / gib, 2),
         "peak_rss_mib": result["peak_rss_MiB"]},
        {"metric": f"run peak RSS / {RSS_GOAL_MIB} MiB", "size": label, "bytes": size,
         "ratio": round(result["peak_rss_MiB"] / RSS_GOAL_MIB, 3), "goal": 1.0, "better": "lower",
         "peak_rss_mib": result["peak_rss_MiB"]},
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1GiB", help="DB sizes, e.g. 256MiB,1GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="juju-2.9", choices=[p.name for p in profiles.PROFILES])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results dir (default {RESULTS})")
    args = parser.parse_args(argv)
    byte_compile()
    by_size: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for label, size in parse_sizes(args.sizes):
        result = run(size, args.runs, args.profile)
        by_size[label] = result
        all_rows += rows(label, size, result)
        print(f"run benchmark {args.profile}, DB {label}, median of {args.runs}: by hand "
              f"{result['median_by_hand_s']} s, run {result['median_run_s']} s -> {result['ratio']}x "
              f"(goal <= {GOAL}x); peak RSS {result['peak_rss_MiB']} MiB (goal < {RSS_GOAL_MIB})")
    save({"runs": args.runs, "results": all_rows, "by_size": by_size}, "run", args.profile, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
