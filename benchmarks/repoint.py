"""Repoint benchmark (issue 14): `jujubackup repoint` on N workload machines vs a by-hand serial loop.

    sudo .venv/bin/python -m benchmarks.repoint [--machines 16] [--runs 1] [--profile juju-2.9] [--json]

Boots a lab controller with `--machines` workload machines (stand-in agents logged in to its API),
then measures in the same run, alternately, median of `--runs` (wall time on this workstation):

  by hand     for m in …; do ssh ubuntu@m 'sudo sed -i … /var/lib/juju/agents/*/agent.conf &&
              sudo systemctl restart jujud-machine-*'; done   (one SSH session per machine, serial,
              no check that the agents came back)
  repoint     `jujubackup repoint --target ctl0` (read the machines and addresses from juju-db,
              --parallel 8 machines at a time: rewrite every agent.conf, restart, wait until every
              agent logged its connection to the new address)

The by-hand loop is also timed until every agent reported its connection (the lab's status
files; the loop itself checks nothing), which is what repoint's time includes. Both change every
agent.conf each time: the by-hand loop writes [ctl0:17070, 127.0.0.1:17070],
repoint writes what the controller tells agents ([ctl0:17070]); the agents reconnect to ctl0 either way.
Goal: repoint ≤ 0.3× the by-hand loop.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.lab.agents import wait_agents
from tests.lab.lab import Lab

GOAL = 0.3


def timed(argv: list[str]) -> float:
    """Run argv; return its wall seconds. Raise RuntimeError if it fails."""
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({done.returncode}): {done.stdout[-1500:]} "
                           f"{done.stderr[-1500:]}")
    return elapsed


def by_hand(lab: Lab, addresses: list[str]) -> float:
    """The operator's loop: ssh + sed + restart, one machine after the other."""
    lines = "\\n".join(f"- {a}" for a in addresses)
    remote = (f"sudo sed -i -e '/^apiaddresses:/,/^[^-]/{{/^- /d}}' -e '/^apiaddresses:/a {lines}' "
              "/var/lib/juju/agents/*/agent.conf && sudo systemctl restart 'jujud-machine-*'")
    ips = " ".join(h.ip for h in lab.workloads)
    loop = (f"for m in {ips}; do ssh -F {shlex.quote(str(lab.ssh_config))} -o BatchMode=yes ubuntu@$m "
            f"{shlex.quote(remote)} || exit 1; done")
    return timed(["bash", "-c", loop])


def repoint(lab: Lab, verbose: bool) -> float:
    argv = [str(Path(sys.executable).parent / "jujubackup"), "-v" if verbose else "-q", "-F",
            str(lab.ssh_config), "repoint", "--target", "ctl0"]
    if not verbose:
        return timed(argv)
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL)
    print(done.stderr, file=sys.stderr)
    return time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.repoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machines", type=int, default=16)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--profile", default="juju-2.9")
    p.add_argument("--json", action="store_true")
    p.add_argument("--verbose", action="store_true", help="show repoint's per-machine seconds")
    args = p.parse_args(argv)
    with Lab.create(controllers=1, machines=args.machines, profile=args.profile) as lab:
        ctl = lab.host("ctl0")
        for h in lab.workloads:
            wait_agents(h, "connected", timeout=120)
        hand, hand_connected, tool = [], [], []
        for _ in range(args.runs):
            start = time.monotonic()
            hand.append(by_hand(lab, [f"{ctl.ip}:17070", "127.0.0.1:17070"]))
            for h in lab.workloads:  # the by-hand loop does not check: the lab's agents tell
                wait_agents(h, "connected", f"{ctl.ip}:17070", timeout=120, since=start)
            hand_connected.append(time.monotonic() - start)
            tool.append(repoint(lab, args.verbose))
        hand_s, tool_s = statistics.median(hand), statistics.median(tool)
        ratio = round(tool_s / hand_s, 3)
        connected_s = statistics.median(hand_connected)
        result = {"machines": args.machines, "profile": args.profile, "runs": args.runs,
                  "by_hand_s": round(hand_s, 2), "by_hand_until_connected_s": round(connected_s, 2),
                  "repoint_s": round(tool_s, 2), "ratio": ratio,
                  "ratio_vs_until_connected": round(tool_s / connected_s, 3), "goal": GOAL,
                  "ok": ratio <= GOAL}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.machines} machines ({args.profile}): by hand {result['by_hand_s']} s "
              f"({result['by_hand_until_connected_s']} s until every agent connected), "
              f"repoint {result['repoint_s']} s -> {result['ratio']}x (goal <= {GOAL}x); "
              f"{result['ratio_vs_until_connected']}x of by hand until connected")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
