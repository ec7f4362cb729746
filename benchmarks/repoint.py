"""Repoint benchmark (issue 14): `jujubackup repoint` on N workload machines vs a by-hand serial loop.

    sudo .venv/bin/python -m benchmarks.repoint [--machines 16] [--runs 1] [--profile juju-2.9] [--json]
                                                [--out DIR] [--compare-source DIR] [--verbose]

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
Goal: repoint ≤ 0.3× the by-hand loop. Also recorded: the CPU seconds each side used on this
workstation, the controller and the workload machines (their cgroups), which bound repoint on a
2-CPU machine where the lab's agents share the CPUs, and the CLI's start-up (`repoint --help`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, byte_compile, compare_source, save
from tests.lab.agents import wait_agents
from tests.lab.lab import Lab, LabHost

GOAL = 0.3
BOOT_TIMEOUT = 300.0
"""Seconds each of the 17 containers may take to boot: 16 workload machines booting at once on a
shared 2-CPU machine outlast the lab's default 90 s at load averages above 7."""


def host_cpu(host: LabHost) -> float:
    """Return the CPU seconds the processes of lab host `host` used so far (its cgroup v2 dir's
    cpu.stat usage_usec; 0.0 where the machine has none)."""
    for d in host._st.cgroups:
        try:
            for line in Path(d, "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except OSError:
            continue
    return 0.0


def children_cpu() -> float:
    """Return the user+system CPU seconds of this process's waited-for children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CPU:
    """CPU seconds used between start and stop, on this workstation (the timed command and its ssh
    children) and in the lab's controller and workload machines (agents, sshd, API stand-in)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.seconds: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {"client": children_cpu(),
                "controller": host_cpu(self.lab.host("ctl0")),
                "workloads": sum(host_cpu(h) for h in self.lab.workloads)}

    def __enter__(self) -> CPU:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._now()
        self.seconds = {k: round(end[k] - self._start[k], 2) for k in end}


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


def repoint(lab: Lab, verbose: bool, source: Path | None = None) -> float:
    """`jujubackup repoint --target ctl0`; return its wall seconds. With `source`, the jujubackup
    package of that source tree runs instead (PYTHONPATH): an earlier version, timed in the same run."""
    argv = [sys.executable, "-m", "jujubackup", "-v" if verbose else "-q", "-F",
            str(lab.ssh_config), "repoint", "--target", "ctl0"]
    env = {**os.environ, "PYTHONPATH": str(source)} if source else None
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
                          env=env, cwd=source)
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        raise RuntimeError(f"repoint failed ({done.returncode}): {done.stdout[-1500:]} {done.stderr[-1500:]}")
    if verbose:
        print(done.stderr, file=sys.stderr)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.repoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machines", type=int, default=16)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--profile", default="juju-2.9")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results dir (default {RESULTS})")
    p.add_argument("--verbose", action="store_true", help="show repoint's per-machine seconds")
    p.add_argument("--compare-source", type=compare_source, default=None,
                   help="also time the jujubackup package of this source tree (with its own "
                   "jujubackup/remote_scripts: benchmarks/common.py compare_source) in the same run, "
                   "alternately: a change's before/after")
    args = p.parse_args(argv)
    byte_compile(args.compare_source)
    LabHost.wait_ready.__defaults__ = (BOOT_TIMEOUT,)
    with Lab.create(controllers=1, machines=args.machines, profile=args.profile) as lab:
        ctl = lab.host("ctl0")
        for h in lab.workloads:
            wait_agents(h, "connected", timeout=120)
        hand, hand_connected, tool = [], [], []
        hand_cpu, tool_cpu, other, other_cpu = [], [], [], []
        startup = []
        for _ in range(args.runs):
            start = time.monotonic()
            with CPU(lab) as used:
                hand.append(by_hand(lab, [f"{ctl.ip}:17070", "127.0.0.1:17070"]))
                for h in lab.workloads:  # the by-hand loop does not check: the lab's agents tell
                    wait_agents(h, "connected", f"{ctl.ip}:17070", timeout=120, since=start)
            hand_connected.append(time.monotonic() - start)
            hand_cpu.append(used.seconds)
            with CPU(lab) as used:
                tool.append(repoint(lab, args.verbose))
            tool_cpu.append(used.seconds)
            if args.compare_source:
                # the same starting point: every agent.conf as the by-hand loop left it (repoint
                # leaves alone an agent that already holds the addresses and is connected)
                start = time.monotonic()
                by_hand(lab, [f"{ctl.ip}:17070", "127.0.0.1:17070"])
                for h in lab.workloads:
                    wait_agents(h, "connected", f"{ctl.ip}:17070", timeout=120, since=start)
                with CPU(lab) as used:
                    other.append(repoint(lab, args.verbose, args.compare_source))
                other_cpu.append(used.seconds)
            startup.append(timed([str(Path(sys.executable).parent / "jujubackup"), "repoint", "--help"]))
        hand_s, tool_s = statistics.median(hand), statistics.median(tool)
        ratio = round(tool_s / hand_s, 3)
        connected_s = statistics.median(hand_connected)
        result = {"machines": args.machines, "profile": args.profile, "runs": args.runs,
                  "by_hand_s": round(hand_s, 2), "by_hand_until_connected_s": round(connected_s, 2),
                  "repoint_s": round(tool_s, 2), "ratio": ratio,
                  "ratio_vs_until_connected": round(tool_s / connected_s, 3), "goal": GOAL,
                  "ok": ratio <= GOAL,
                  # what bounds repoint on this machine: the CPU seconds it and the lab's agents use
                  # (over os.cpu_count() CPUs), and the CLI's own start-up (`repoint --help`)
                  "cpus": os.cpu_count(), "load_average": os.getloadavg(),
                  "by_hand_cpu_s": hand_cpu, "repoint_cpu_s": tool_cpu,
                  "cli_startup_s": round(statistics.median(startup), 2)}
        if other:
            result.update({"compare_source": str(args.compare_source),
                           "compare_repoint_s": round(statistics.median(other), 2),
                           "compare_ratio": round(statistics.median(other) / hand_s, 3),
                           "compare_cpu_s": other_cpu})
    size = f"{args.machines} machines"
    result["results"] = [
        {"metric": "repoint vs by-hand serial ssh+sed loop", "size": size, "bytes": 0,
         "ratio": result["ratio"], "goal": GOAL, "better": "lower"},
        {"metric": "repoint vs by-hand loop until every agent connected", "size": size, "bytes": 0,
         "ratio": result["ratio_vs_until_connected"], "goal": None, "better": "lower"},
    ]
    save(result, "repoint", args.profile, args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.machines} machines ({args.profile}): by hand {result['by_hand_s']} s "
              f"({result['by_hand_until_connected_s']} s until every agent connected), "
              f"repoint {result['repoint_s']} s -> {result['ratio']}x (goal <= {GOAL}x); "
              f"{result['ratio_vs_until_connected']}x of by hand until connected")
        print(f"  CPU seconds (by hand until connected): {hand_cpu}")
        if other:
            print(f"  {args.compare_source}: repoint {result['compare_repoint_s']} s -> "
                  f"{result['compare_ratio']}x; CPU seconds {other_cpu}")
        print(f"  CPU seconds (repoint): {tool_cpu}; {os.cpu_count()} CPUs, CLI start-up "
              f"{result['cli_startup_s']} s, load average {os.getloadavg()}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
