"""Restore benchmark (issue 5): disaster recovery of a ~1 GiB backup vs the same work done by hand.

    sudo .venv/bin/python -m benchmarks.restore [--sizes 256MiB,1GiB] [--runs 3] [--profile juju-2.9]
                                               [--out DIR] [--json] [--verified-only]

For each size, boots a lab (ctl0 + spare0 + spare1 + spare2), creates a backup on ctl0 with
`jujubackup create`, downloads it,
grows it to about `--size` by appending incompressible chunks to the dump's blobstore.chunks (charm and
agent binaries are what makes real archives big; the lab's generated logs compress to almost nothing),
powers ctl0 off, then measures in the same run, round robin, median of `--runs`:

  jujubackup  `jujubackup restore --archive FILE --target spare0 --yes` on a spare wiped back to fresh
              before each run: re-address, push, unpack, untar, fresh juju-db, mongorestore, start,
              verify (everything the operator gets), of the operator's downloaded copy that
              `jujubackup verify` passed (its SHA-256 is checked on the target), and of a copy never
              verified (verified during the restore, in another process)
  by hand     onto spare1 (juju-db already set up there, untimed): `ssh 'cat > F' < FILE`, then over
              ssh `pigz -p 1 -dc | tar -x` (the single-threaded pigz jujubackup uses: pigz's helper
              threads cost 5x the CPU on a 2-vCPU host), `tar -xpf root.tar -C /`,
              `mongorestore --drop --oplogReplay` with the password on stdin - the data movement an
              expert would type

  drill       `jujubackup drill --archive FILE --target spare2` (the verified copy) on a spare
              wiped the same way: the same restore stages, isolated, then every check (issue 16)

On 3.x every timed restore and drill runs on a freshly bootstrapped controller of its own instead (a
3.x DR restore needs `juju bootstrap` first), by hand on one more (see `run`).

Goals: jujubackup within 1.2x of by hand (issue 18; 1.3x on juju-3.6, issue 12); a drill within
1.15x of the restore of the same archive in the same run (issue 16). Besides the ratio of the
medians it reports the PAIRED ratios (round i restored / round i by hand, the two timed one after
the other) with their median and interquartile range: on this shared machine one mongorestore
varies 3-16 s from round to round, and pairing cancels what drifts between rounds. Both sides'
seconds per step are kept (by hand: push, ssh, unpack, untar-files, load-db, timed by `date` inside
its one script) with their medians. `--out` writes the rows
`python -m benchmarks.report` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bson

from benchmarks.common import (
    RESULTS,
    byte_compile,
    compare_source,
    paired,
    parse_sizes,
    save,
    step_medians,
    warm_free_memory,
)
from jujubackup import archive as archive_mod
from jujubackup import profiles
from tests.lab import provision
from tests.lab.clienttls import mongo_tls
from tests.lab.lab import Lab

GOAL = 1.2
DRILL_GOAL = 1.15
CHUNK = 1 << 20
CHUNKS = "dump/blobstore/blobstore.chunks.bson"
REPO = Path(__file__).resolve().parents[1]


def jb(lab: Lab, *args: str, source: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the jujubackup CLI against the lab (with `source`: the jujubackup package of that source
    tree); raise if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "jujubackup", "-F", str(lab.ssh_config), "-q", *args],
        cwd=source or REPO,
        env={**os.environ, "PYTHONPATH": str(source)} if source else None,
        capture_output=True,
        text=True,
        timeout=3600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise SystemExit(f"jujubackup {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def ssh(lab: Lab, host: str, command: str, stdin: Any = subprocess.DEVNULL) -> str:
    """Run `command` on `host` with the plain OpenSSH client; return its stdout. Raise if it fails."""
    done = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), host, command],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"ssh {host} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def inflate(src: Path, dst: Path, size: int) -> None:
    """Copy archive `src` to `dst` with about `size` bytes of random 1 MiB blobstore chunks appended."""

    def grow(old: Any, new: Any) -> None:
        while block := old.read(CHUNK):
            new.write(block)
        files_id = bson.ObjectId()
        for n in range(max(1, size // CHUNK)):
            doc = {
                "_id": bson.ObjectId(),
                "files_id": files_id,
                "n": n,
                "data": bson.Binary(os.urandom(CHUNK)),
            }
            new.write(bson.encode(doc))

    archive_mod.rewrite_archive(src, dst, transforms={CHUNKS: grow}, compresslevel=1)


def wipe_spare(lab: Lab, host: str, profile: profiles.Profile) -> None:
    """Return a spare to fresh (no juju state, no juju units) - untimed, between runs."""
    common = profile.mongo_dir if profile.mongo_dir != profiles.DATA_DIR else ""
    extra = (
        " ".join(f"{common}/{n}" for n in ("db", "juju-db.config", "server.pem", "shared-secret", "logs"))
        if common
        else ""
    )
    ssh(
        lab,
        host,
        "systemctl stop 'jujud-machine-*' " + profile.db_service + " 2>/dev/null || true; "
        "rm -rf /var/lib/juju /var/lib/jujubackup-restore* /var/lib/jujubackup-drill "
        f"{extra} /etc/systemd/system/jujud-machine-* "
        f"/etc/systemd/system/{profile.db_service}.service; systemctl daemon-reload",
    )


HAND_STEPS = ("unpack", "untar-files", "load-db")
"""The by-hand script's steps after the push, each timed on the host (see by_hand)."""


def by_hand(lab: Lab, host: str, archive: Path, profile: profiles.Profile) -> tuple[float, dict[str, float]]:
    """Push, unpack, untar and mongorestore over plain ssh onto `host`; return seconds and the
    seconds of each step: push (the `ssh cat`), ssh (the second session's login and exit: its time
    minus the script's own), then HAND_STEPS, timed by `date` inside the one script, so that timing
    them adds no SSH session. The dump is unpacked where the (snap-confined) mongorestore may read
    it: under SNAP_COMMON on a snap, as an operator there must too."""
    tls = " ".join(mongo_tls(profile.name, lab.host(host).root).tools)
    bh = f"{profile.dump_scratch_dir}/bh" if profile.dump_scratch_dir else "/root/bh"
    script = (
        f"set -euo pipefail; date +%s.%N; rm -rf {bh}; mkdir -m 0700 {bh}; "
        f"pigz -p 1 -dc /root/bh.tar.gz | tar -x -C {bh}; date +%s.%N; "
        f"tar -xpf {bh}/juju-backup/root.tar -C /; date +%s.%N; "
        "pw=$(awk '/^statepassword:/{print $2}' /var/lib/juju/agents/machine-0/agent.conf); "
        f"printf '%s\\n' \"$pw\" | {profile.mongorestore} --host 127.0.0.1 --port 37017 --username machine-0 "
        f"--authenticationDatabase admin {tls} --drop --oplogReplay {bh}/juju-backup/dump >/dev/null; "
        "date +%s.%N"
    )
    start = time.monotonic()
    with archive.open("rb") as fh:
        ssh(lab, host, "cat > /root/bh.tar.gz", stdin=fh)
    pushed = time.monotonic()
    marks = [float(x) for x in ssh(lab, host, script).split()]
    end = time.monotonic()
    return end - start, hand_steps(pushed - start, end - pushed, marks)


def hand_steps(push: float, session: float, marks: list[float]) -> dict[str, float]:
    """Given the push's seconds, the second SSH session's seconds and the script's `date` marks
    (start, then one after each of HAND_STEPS), return the seconds of push, ssh and each step.
    Raise ValueError unless there is one mark more than HAND_STEPS."""
    if len(marks) != len(HAND_STEPS) + 1:
        raise ValueError(f"by hand printed {len(marks)} time marks, not {len(HAND_STEPS) + 1}")
    steps = {"push": push, "ssh": session - (marks[-1] - marks[0])}
    steps.update({name: b - a for name, a, b in zip(HAND_STEPS, marks, marks[1:], strict=False)})
    return {k: round(v, 3) for k, v in steps.items()}


def ours(lab: Lab, host: str, archive: Path, source: Path | None = None) -> tuple[float, dict[str, float]]:
    """`jujubackup restore --archive` onto `host`; return seconds and the seconds per step it reports."""
    start = time.monotonic()
    done = jb(lab, "--format", "json", "restore", "--archive", str(archive), "--target", host, "--yes",
              source=source)
    seconds = time.monotonic() - start
    return seconds, json.loads(done.stdout).get("seconds", {})  # --format json: one document


def drill(lab: Lab, host: str, archive: Path) -> tuple[float, dict[str, float]]:
    """`jujubackup drill --archive` onto `host`; return seconds and the seconds of each check it
    reports (isolation, restore, the health checks). Raise if a check fails."""
    start = time.monotonic()
    done = jb(lab, "--format", "json", "drill", "--archive", str(archive), "--target", host)
    seconds = time.monotonic() - start
    checks = json.loads(done.stdout).get("checks", [])
    return seconds, {str(c["check"]): float(c["seconds"]) for c in checks if isinstance(c, dict)}


def needs_bootstrapped_target(profile_name: str) -> bool:
    """Given a profile, return whether a DR restore needs a bootstrapped controller as its target
    (3.x: a bare machine has no dqlite node; restore refuses it)."""
    return bool(provision.PROFILES[profile_name].base)


def run(size: int, runs: int, profile_name: str, source: Path | None = None,
        verified_only: bool = False) -> dict[str, Any]:
    """Boot the lab, make the backup, measure both ways round robin; return the results.

    On 2.x the targets are spares wiped back to fresh before each run. On 3.x (a DR restore needs a
    freshly bootstrapped controller: `juju bootstrap` then restore) every timed restore and drill
    gets a bootstrapped spare of its own (restoring again over a restored controller would add a
    snapshot of its 1 GiB DB that a DR restore over a fresh bootstrap does not make; a drilled
    machine runs jujud and is refused), and by hand restores onto one more. `verified_only`: time
    only the restore of the verified copy and by hand (and `source`), not the never-verified copy
    nor the drill: a 3.x lab of many rounds then needs a third of the bootstrapped spares."""
    profile = profiles.profile_named(profile_name)
    juju3 = needs_bootstrapped_target(profile_name)
    # unverified, verified, drill (, the compared source)
    kinds = (["verified"] if verified_only else ["unverified", "verified", "drill"]) + (
        ["source"] if source is not None else [])
    sides = len(kinds)
    if juju3:
        fresh = iter(f"boot{n}" for n in range(sides * runs))
        hand_on = f"boot{sides * runs}"
    else:
        fresh = iter([{"drill": "spare2"}.get(k, "spare0") for k in kinds] * runs)
        hand_on = "spare1"

    def target() -> str:
        """The next timed run's target: a spare wiped back to fresh (2.x), a fresh bootstrap (3.x)."""
        host = next(fresh)
        if not juju3:
            wipe_spare(lab, host, profile)
        os.sync()
        warm_free_memory()
        return host

    used: list[str] = []
    with (
        Lab.create(controllers=1, spares=0 if juju3 else 3,
                   bootstrapped_spares=sides * runs + 1 if juju3 else 0, profile=profile_name) as lab,
        tempfile.TemporaryDirectory(prefix="bench-restore-") as tmp,
    ):
        small, archive = Path(tmp) / "small.tar.gz", Path(tmp) / "backup.tar.gz"
        kept = Path(tmp) / "kept"
        kept.mkdir()
        backup_id = jb(lab, "-H", "ctl0", "create").stdout.strip().splitlines()[-1]
        jb(lab, "-H", "ctl0", "download", backup_id, str(small))
        inflate(small, archive, size)
        # The operator's copy: the big backup as stored on the controller, downloaded (with its
        # sidecar) and checked with `verify` (untimed, as it would be long before the disaster).
        jb(lab, "-H", "ctl0", "upload", "--force", str(archive))
        verified = kept / "backup.tar.gz"
        jb(lab, "-H", "ctl0", "download", backup_id, str(verified))
        jb(lab, "verify", str(verified))
        lab.host("ctl0").power_off()
        jb(lab, "restore", "--archive", str(archive), "--target", hand_on, "--yes")  # by-hand target set up
        cold, warm, theirs, drills = [], [], [], []
        load_before = os.getloadavg()
        steps: list[dict[str, float]] = []
        warm_steps: list[dict[str, float]] = []
        hand_steps: list[dict[str, float]] = []
        drill_checks: list[dict[str, float]] = []
        compare: list[float] = []
        for _ in range(runs):
            # Each timed run starts with nothing dirty in the page cache (target() syncs): the
            # previous run's writeback (gigabytes on the lab's disk) must not be billed to the next one;
            # and with a pool of backed free memory (warm_free_memory): by hand reuses its target and
            # recycles its own last files, a fresh target cannot.
            if not verified_only:
                used.append(host := target())
                took, per_step = ours(lab, host, archive)
                cold.append(took)
                steps.append(per_step)
            used.append(host := target())
            took, per_step = ours(lab, host, verified)
            warm.append(took)
            steps.append(per_step)
            warm_steps.append(per_step)
            os.sync()
            warm_free_memory()
            took, per_step = by_hand(lab, hand_on, archive, profile)
            theirs.append(took)
            hand_steps.append(per_step)
            if not verified_only:
                used.append(host := target())
                took, per_check = drill(lab, host, verified)
                drills.append(took)
                drill_checks.append(per_check)
            if source is not None:  # an earlier version, in the same run: a change's before/after
                used.append(host := target())
                compare.append(ours(lab, host, verified, source)[0])
        ratio = statistics.median(warm) / statistics.median(theirs)
        pairs = paired(warm, theirs)
        return {
            "profile": profile_name,
            "targets": {"timed": used, "by_hand": hand_on},
            "archive_bytes": archive.stat().st_size,
            "runs": runs,
            "jujubackup_s": [round(x, 2) for x in warm],
            "jujubackup_unverified_s": [round(x, 2) for x in cold],
            "by_hand_s": [round(x, 2) for x in theirs],
            "median_jujubackup_s": round(statistics.median(warm), 2),
            "median_by_hand_s": round(statistics.median(theirs), 2),
            "jujubackup_step_s": steps,
            "by_hand_step_s": hand_steps,
            "median_jujubackup_step_s": step_medians(warm_steps),
            "median_by_hand_step_s": step_medians(hand_steps),
            "ratio": round(ratio, 3),
            "paired": pairs,
            "goal": GOAL,
            "met": ratio <= GOAL,
            "load_average_before": load_before,
            "load_average": os.getloadavg(),
            **({"ratio_unverified": round(statistics.median(cold) / statistics.median(theirs), 3),
                "paired_unverified": paired(cold, theirs),
                "median_jujubackup_unverified_s": round(statistics.median(cold), 2),
                "drill_s": [round(x, 2) for x in drills],
                "median_drill_s": round(statistics.median(drills), 2),
                "drill_check_s": drill_checks,
                "drill_ratio": round(statistics.median(drills) / statistics.median(warm), 3),
                "paired_drill": paired(drills, warm),
                "drill_goal": DRILL_GOAL}
               if not verified_only else {}),
            **({"compare_source": str(source), "compare_s": [round(x, 2) for x in compare],
                "compare_ratio": round(statistics.median(compare) / statistics.median(theirs), 3),
                "paired_compare": paired(compare, theirs)}
               if source is not None else {}),
        }


def rows(label: str, size: int, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Given one size's result, return its rows for benchmarks.report (the never-verified and drill
    rows only when the run timed them)."""
    gib = size / 2**30
    ours, hand = result["median_jujubackup_s"], result["median_by_hand_s"]
    load = f"{result['load_average_before'][0]:.1f}→{result['load_average'][0]:.1f}"

    def pairs(key: str) -> dict[str, Any]:
        p = result[key]
        return {"paired_median": p["median"], "paired_q1": p["q1"], "paired_q3": p["q3"]}

    out = [
        {"metric": "DR restore (verify passed) vs by hand", "size": label, "bytes": size,
         "ratio": result["ratio"], **pairs("paired"), "load": load,
         "goal": GOAL, "better": "lower", "ours_s_per_gib": round(ours / gib, 2),
         "baseline_s_per_gib": round(hand / gib, 2)},
    ]
    if "ratio_unverified" in result:
        cold = result["median_jujubackup_unverified_s"]
        out += [
            {"metric": "DR restore (never verified) vs by hand", "size": label, "bytes": size,
             "ratio": result["ratio_unverified"], **pairs("paired_unverified"), "load": load,
             "goal": None, "better": "lower",
             "ours_s_per_gib": round(cold / gib, 2), "baseline_s_per_gib": round(hand / gib, 2)},
            {"metric": "drill vs DR restore", "size": label, "bytes": size, "ratio": result["drill_ratio"],
             **pairs("paired_drill"), "load": load, "goal": DRILL_GOAL, "better": "lower",
             "ours_s_per_gib": round(result["median_drill_s"] / gib, 2),
             "baseline_s_per_gib": round(ours / gib, 2)},
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", "--size", default="1GiB", help="DB data sizes, e.g. 256MiB,1GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="juju-2.9", choices=[p.name for p in profiles.PROFILES])
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results dir (default {RESULTS})")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verified-only", action="store_true",
                        help="time only the restore of the verified copy against by hand (no never-verified "
                        "copy, no drill): on 3.x a third of the bootstrapped spares")
    parser.add_argument("--compare-source", type=compare_source, default=None,
                        help="also time the restore (verified copy) of the jujubackup package of this "
                        "source tree in the same run: a change's before/after")
    args = parser.parse_args(argv)
    byte_compile(args.compare_source)
    load_at_start = os.getloadavg()  # before the lab boots
    by_size: dict[str, Any] = {}
    all_rows: list[dict[str, Any]] = []
    for label, size in parse_sizes(args.sizes):
        result = run(size, args.runs, args.profile, args.compare_source, args.verified_only)
        by_size[label] = result
        all_rows += rows(label, size, result)
        if not args.json:
            show(result)
    doc = {"runs": args.runs, "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(),
           "results": all_rows, "by_size": by_size}
    save(doc, "restore", args.profile, args.out)
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0 if all(r["met"] for r in by_size.values()) else 1


def show(result: dict[str, Any]) -> None:
    """Print one size's result for a person."""
    print(
        f"restore of a {result['archive_bytes'] / 2**20:.0f} MiB archive ({result['profile']}), "
        f"median of {result['runs']}:"
    )
    print(
        f"  jujubackup restore --archive  {result['median_jujubackup_s']:8.2f} s  "
        f"{result['jujubackup_s']}  (a downloaded copy that `verify` passed)"
    )
    if "ratio_unverified" in result:
        print(
            f"  same, archive not verified    {result['median_jujubackup_unverified_s']:8.2f} s  "
            f"{result['jujubackup_unverified_s']}  (verified during the restore)"
        )
    print(f"  by hand over ssh              {result['median_by_hand_s']:8.2f} s  {result['by_hand_s']}")
    if "drill_s" in result:
        print(f"  jujubackup drill --archive    {result['median_drill_s']:8.2f} s  {result['drill_s']}")
    for n, per_step in enumerate(result["jujubackup_step_s"], 1):
        print(f"  run {n} steps: " + ", ".join(f"{k} {v:.1f}" for k, v in per_step.items()))
    for n, per_step in enumerate(result["by_hand_step_s"], 1):
        print(f"  by hand {n} steps: " + ", ".join(f"{k} {v:.1f}" for k, v in per_step.items()))
    print("  median steps, restore: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["median_jujubackup_step_s"].items()))
    print("  median steps, by hand: " + ", ".join(
        f"{k} {v:.2f}" for k, v in result["median_by_hand_step_s"].items()))
    for n, per_check in enumerate(result.get("drill_check_s", []), 1):
        print(f"  drill {n} checks: " + ", ".join(f"{k} {v:.1f}" for k, v in per_check.items()))
    if "compare_source" in result:
        c = result["paired_compare"]
        print(f"  {result['compare_source']}: restore {result['compare_s']} -> "
              f"{result['compare_ratio']:.3f}x of by hand (paired median {c['median']:.3f}, "
              f"IQR {c['q1']:.3f}-{c['q3']:.3f})")
    print(f"  load average before the rounds {result['load_average_before']}, at the end "
          f"{result['load_average']}")
    p = result["paired"]
    verdict = "met" if result["met"] else "NOT met"
    print(f"  ratio of medians {result['ratio']:.3f} (goal <= {GOAL}): {verdict}; "
          f"paired per round: median {p['median']:.3f}, IQR {p['q1']:.3f}-{p['q3']:.3f} {p['ratios']}")
    if "ratio_unverified" in result:
        print(f"  not verified before: {result['ratio_unverified']:.3f}; drill / restore "
              f"{result['drill_ratio']:.3f} (goal <= {DRILL_GOAL})")


if __name__ == "__main__":
    sys.exit(main())
