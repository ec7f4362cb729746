"""What every benchmark shares: sizes on the command line, and where its JSON result goes.

Each benchmark prints its JSON result and, with `--out DIR` (default `benchmarks/results`), also
writes it to `DIR/<benchmark>-<profile>.json`, tagged with the benchmark's name, the profile, the
machine's CPU count and the time it ran, so that `python -m benchmarks.report` can put the results
of one session into one table and one chart.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import json
import mmap
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def compare_source(text: str) -> Path:
    """Given --compare-source DIR, return it as a Path (argparse `type=`). Raise ArgumentTypeError unless
    DIR/jujubackup/remote_scripts is a dir: the templates live at the repository's top level and an
    editable install maps `jujubackup.remote_scripts` to this checkout's, so a DIR without its own
    copy would render today's templates with the older code. Make DIR with
    `git archive REV jujubackup remote_scripts templates | tar -x -C DIR`, then
    `cp -r DIR/remote_scripts DIR/templates DIR/jujubackup/`."""
    path = Path(text)
    if not (path / "jujubackup" / "remote_scripts").is_dir():
        raise argparse.ArgumentTypeError(
            f"{path}/jujubackup/remote_scripts is missing: without it the older code renders this "
            "checkout's templates (see benchmarks/common.py compare_source)")
    return path


PACKAGE = Path(__file__).resolve().parent.parent / "jujubackup"


def byte_compile(compare: Path | None = None) -> None:
    """Write the .pyc files of this checkout's package (and of `compare`'s, if given) as installing a
    wheel does (pip compiles at install). Why: the lab installs this checkout editable, and with
    PYTHONDONTWRITEBYTECODE=1 in the environment (as on the lab machines) every command would compile
    every module it imports from source at every start, ~0.2 s per command on 2 vCPUs: a cost no
    operator's install pays, and one that would weigh on every ratio against a by-hand baseline.
    compileall writes a file only when its source changed; an edited module with a stale .pyc is
    compiled again at import, as without one."""
    compile_packages([PACKAGE, *([compare / "jujubackup"] if compare else [])])


def compile_packages(packages: list[Path]) -> None:
    """Given package dirs, write the .pyc of every module in them. Raise RuntimeError if one does
    not compile or its .pyc cannot be written."""
    for package in packages:
        if not compileall.compile_dir(str(package), quiet=1):
            raise RuntimeError(f"{package}: a module does not compile or its .pyc cannot be written")


def parse_size(text: str) -> int:
    """Given '256MiB', '1GiB', '512M', '2G' or a byte count, return bytes (K/M/G/T: powers of 1024).
    Raise ValueError on anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*", text, re.I)
    if not m:
        raise ValueError(f"bad size {text!r} (examples: 256MiB, 1GiB, 4GiB)")
    return int(float(m.group(1)) * (1024 ** " KMGT".index(m.group(2).upper() or " ")))


def parse_sizes(text: str) -> list[tuple[str, int]]:
    """Given '256MiB,1GiB,4GiB', return [(label, bytes), ...] in that order. Raise ValueError."""
    labels = [s.strip() for s in text.split(",") if s.strip()]
    if not labels:
        raise ValueError("no size given (example: --sizes 256MiB,1GiB,4GiB)")
    return [(label, parse_size(label)) for label in labels]


def save(doc: dict[str, Any], benchmark: str, profile: str, out: Path | None) -> Path | None:
    """Given a benchmark's result, tag it and write it to `out/<benchmark>-<profile>.json`; return
    the path (None when `out` is None)."""
    doc = {
        "benchmark": benchmark,
        "profile": profile,
        "cpus": os.cpu_count(),
        "bytecode": "compiled before the rounds (benchmarks/common.py byte_compile)",
        "ran": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **doc,
    }
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{benchmark}-{profile}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


WARM_POOL = 4 << 30
"""Bytes warm_free_memory touches before each timed restore or transfer command: more than either
side of a 1 GiB restore allocates (ours: the unpacked dump and juju-db's copy, 2 GiB; by hand: also
the pushed archive file, 3 GiB), and as much as a 4 GiB transfer writes."""


def warm_free_memory(size: int = WARM_POOL) -> None:
    """Touch `size` bytes of anonymous memory and free them again (untimed, before a timed command),
    so that the command's new page cache comes from memory the hypervisor backs.

    Why: this VM's virtio-balloon reports free memory to the host (free page reporting, feature bit 5
    of /sys/bus/virtio/devices/virtio0/features); memory free for more than ~10-20 s is handed back,
    and the first write to it again costs ~2.5 s of kernel time per GiB (measured: 0.18 s for 1 GiB
    into freshly freed memory, 1.24-2.74 s for the 2nd and 3rd GiB after 30 s idle; a slow load-db's
    profile is 36 % copy_folio_from_iter_atomic). A side that rewrites its own earlier files (by hand
    reuses its target: `cat >` truncates the last archive, `rm -rf` frees the last unpack just before
    the new one) recycles memory freed a moment ago; a restore onto a fresh target cannot. Warming
    the same pool before every timed command puts both sides on the same footing, as on hardware
    where fresh memory costs nothing. Anonymous memory, not a file: no writeback to the lab's disk."""
    block = b"\xa5" * (1 << 20)
    with mmap.mmap(-1, size) as pool:
        for _ in range(size >> 20):
            pool.write(block)


# Runs argv[2:] as its child and writes that child's peak RSS (KiB, wait4) and its CPU seconds (user
# and system, its waited-for descendants included: the verifying child, `ssh`) to the file argv[1];
# exits with the child's status. Why a wrapper: a child's ru_maxrss includes the RSS of the process
# it was forked from, recorded by the kernel at exec (exec_mmap -> setmax_mm_hiwater_rss), so wait4
# in a benchmark would report at least the benchmark's own RSS; this small wrapper's is ~10 MiB.
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_pid, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {usage.ru_utime:.3f} {usage.ru_stime:.3f}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def rss_wrapped(argv: list[str], rss_file: Path) -> list[str]:
    """Given a command and a file, return the command that runs it under RSS_WRAPPER, which writes
    the command's own peak RSS (KiB) and CPU seconds to `rss_file` (read_rss_kib, read_cpu_seconds)."""
    return [sys.executable, "-c", RSS_WRAPPER, str(rss_file), *argv]


def read_rss_kib(rss_file: Path) -> int:
    """Given the file an rss_wrapped command wrote, return its peak RSS in KiB (0 if it wrote none:
    the command could not be started)."""
    fields = rss_file.read_text().split()
    return int(fields[0]) if fields else 0


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Given one or more numbers, return (first quartile, median, third quartile), interpolated
    linearly between the sorted values (statistics.quantiles' "inclusive" method, numpy's default),
    so that the quartiles of a single value are that value. Raise ValueError on no values."""
    if not values:
        raise ValueError("quartiles of no values")
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, mid, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, mid, q3


def paired(ours: list[float], baseline: list[float]) -> dict[str, Any]:
    """Given the seconds of both sides, one pair per round (round i of ours ran next to round i of
    the baseline), return each round's ratio ours/baseline and their median and interquartile range:
    {"ratios": [...], "median": m, "q1": a, "q3": b}, rounded to 3 places. Pairing cancels what
    drifts from round to round (the machine's load), which the ratio of two medians does not.
    Raise ValueError when the lists differ in length, are empty, or a baseline is not positive."""
    if len(ours) != len(baseline) or not ours:
        raise ValueError(f"paired ratios need one baseline per round ({len(ours)} vs {len(baseline)})")
    if min(baseline) <= 0:
        raise ValueError("paired ratios need positive baseline seconds")
    ratios = [o / b for o, b in zip(ours, baseline, strict=True)]
    q1, mid, q3 = quartiles(ratios)
    return {"ratios": [round(r, 3) for r in ratios], "median": round(mid, 3),
            "q1": round(q1, 3), "q3": round(q3, 3)}


def step_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Given the seconds per step of each run, return each step's median over the runs that have it,
    in the order the steps first appear, rounded to 2 places."""
    names: dict[str, list[float]] = {}
    for run in runs:
        for name, seconds in run.items():
            names.setdefault(name, []).append(float(seconds))
    return {name: round(statistics.median(values), 2) for name, values in names.items()}


def read_cpu_seconds(rss_file: Path) -> float:
    """Given the file an rss_wrapped command wrote, return the user + system CPU seconds of the
    command and its waited-for descendants (0.0 if it wrote none)."""
    fields = rss_file.read_text().split()
    return float(fields[1]) + float(fields[2]) if len(fields) >= 3 else 0.0


def machine_cpu() -> tuple[float, float]:
    """Return (busy, total) CPU seconds of this whole machine since boot, all CPUs (/proc/stat's
    first line; busy is everything but idle and iowait), to tell how saturated the CPUs were
    between two readings: (busy1 - busy0) / (total1 - total0)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return (total - fields[3] - fields[4]) / hz, total / hz


def cgroup_cpu_seconds(dirs: list[str]) -> float:
    """Given a lab host's cgroup v2 dirs, return the CPU seconds its processes used so far (the
    first readable dir's cpu.stat usage_usec; 0.0 when none is readable)."""
    for d in dirs:
        try:
            for line in Path(d, "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except OSError:
            continue
    return 0.0
