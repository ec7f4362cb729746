"""One picture of every benchmark: a markdown table and a PNG chart from the benchmarks' JSON.

    .venv/bin/python -m benchmarks.report [--results benchmarks/results] [--png FILE] [--md FILE]

Reads every `*.json` a benchmark wrote with `--out` (benchmarks/common.py), takes their `results`
rows (one per compared pair and size: the ratio, its goal and which way is better, the seconds per
GiB of both sides, peak RSS), and writes:

  - a markdown table, one row per benchmark, profile and size, with whether the goal is met;
  - a scale table: per benchmark and profile, how far seconds per GiB of jujubackup spread across
    sizes (goal: within +-20 % of their median) and whether peak RSS grows with size;
  - with matplotlib installed (`pip install -e '.[bench]'`), a PNG: the ratio of every row as a bar,
    its goal as a line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS

SCALE_SPREAD = 0.20


@dataclass(frozen=True)
class Row:
    """One compared pair at one size, from one benchmark's JSON."""

    benchmark: str
    profile: str
    metric: str
    size: str
    bytes: int
    ratio: float
    goal: float | None
    better: str  # "lower": ratio <= goal is met; "higher": ratio >= goal is met
    ours_s_per_gib: float | None
    baseline_s_per_gib: float | None
    peak_rss_mib: float | None
    ran: str
    load: str | None = None  # the machine's 1-minute load average during the run, as the benchmark wrote it
    paired: tuple[float, float, float] | None = None
    """(q1, median, q3) of the per-round ratios, where a benchmark pairs rounds (restore)."""

    @property
    def met(self) -> bool | None:
        """Whether the goal is met (None without a goal)."""
        if self.goal is None:
            return None
        return self.ratio <= self.goal if self.better == "lower" else self.ratio >= self.goal


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows_of(doc: dict[str, Any]) -> list[Row]:
    """Given one benchmark's JSON document, return its rows. Raise ValueError when it has none or a
    row lacks its metric, size or ratio."""
    raw = doc.get("results")
    if not isinstance(raw, list) or not raw:
        name = doc.get("benchmark", "?")
        raise ValueError(f"{name}: no `results` rows (written before benchmarks/common.py?)")
    out = []
    for r in raw:
        ratio = _num(r.get("ratio")) if isinstance(r, dict) else None
        if ratio is None or not r.get("metric") or not r.get("size"):
            raise ValueError(f"{doc.get('benchmark', '?')}: a row without metric, size or ratio: {r!r}"[:300])
        better = r.get("better", "lower")
        if better not in ("lower", "higher"):
            raise ValueError(f"{doc.get('benchmark', '?')}: `better` must be lower or higher, not {better!r}")
        out.append(
            Row(
                benchmark=str(doc.get("benchmark", "?")),
                profile=str(doc.get("profile", "?")),
                metric=str(r["metric"]),
                size=str(r["size"]),
                bytes=int(r.get("bytes") or 0),
                ratio=ratio,
                goal=_num(r.get("goal")),
                better=better,
                ours_s_per_gib=_num(r.get("ours_s_per_gib")),
                baseline_s_per_gib=_num(r.get("baseline_s_per_gib")),
                peak_rss_mib=_num(r.get("peak_rss_mib")),
                ran=str(doc.get("ran", "")),
                load=str(r["load"]) if r.get("load") is not None else None,
                paired=_paired(r),
            )
        )
    return out


def _paired(r: dict[str, Any]) -> tuple[float, float, float] | None:
    """Given a result row, return its paired ratios' (q1, median, q3), or None unless it has all three."""
    q1, mid, q3 = (_num(r.get(k)) for k in ("paired_q1", "paired_median", "paired_q3"))
    return (q1, mid, q3) if q1 is not None and mid is not None and q3 is not None else None


def _fmt_paired(p: tuple[float, float, float] | None) -> str:
    return "—" if p is None else f"{p[1]:.2f}× ({p[0]:.2f}–{p[2]:.2f})"


def load(results: Path) -> list[Row]:
    """Given the results dir, return the rows of every `*.json` in it, sorted. Raise ValueError."""
    rows: list[Row] = []
    for path in sorted(results.glob("*.json")):
        rows.extend(rows_of(json.loads(path.read_text())))
    if not rows:
        raise ValueError(f"no benchmark results in {results} (run a benchmark with --out first)")
    return sorted(rows, key=lambda r: (r.benchmark, r.metric, r.profile, r.bytes))


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def markdown(rows: list[Row]) -> str:
    """Given the rows, return the markdown results table and the scale table."""
    lines = [
        "| benchmark | profile | size | ratio | paired ratio median (IQR) | goal | met | s/GiB jujubackup | "
        "s/GiB baseline | peak RSS MiB | load (1 min) | ran |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        goal = "—" if r.goal is None else ("≤ " if r.better == "lower" else "≥ ") + f"{r.goal:g}×"
        met = {None: "—", True: "yes", False: "**no**"}[r.met]
        lines.append(
            f"| {r.metric} | {r.profile} | {r.size} | {r.ratio:.2f}× | {_fmt_paired(r.paired)} | "
            f"{goal} | {met} | "
            f"{_fmt(r.ours_s_per_gib)} | {_fmt(r.baseline_s_per_gib)} | "
            f"{_fmt(r.peak_rss_mib, '.0f')} | {r.load or '—'} | {r.ran} |"
        )
    lines += [
        "",
        "| benchmark | profile | sizes | s/GiB spread (goal ±20 %) | peak RSS growth |",
        "|---|---|---|---|---|",
    ]
    for (metric, profile), group in _groups(rows).items():
        if len(group) < 2:
            continue
        sizes = ", ".join(r.size for r in group)
        lines.append(f"| {metric} | {profile} | {sizes} | {_spread(group)} | {_rss(group)} |")
    return "\n".join(lines) + "\n"


def _groups(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.metric, r.profile), []).append(r)
    return groups


def _spread(group: list[Row]) -> str:
    per = [r.ours_s_per_gib for r in group if r.ours_s_per_gib]
    if len(per) < 2:
        return "—"
    mid = statistics.median(per)
    worst = max(abs(p - mid) / mid for p in per)
    return f"{worst:.0%} ({'within' if worst <= SCALE_SPREAD else '**beyond**'})"


def _rss(group: list[Row]) -> str:
    rss = [(r.bytes, r.peak_rss_mib) for r in group if r.peak_rss_mib is not None]
    if len(rss) < 2:
        return "—"
    rss.sort()
    growth = rss[-1][1] - rss[0][1]
    flat = growth <= max(16.0, 0.1 * rss[0][1])
    return f"{rss[0][1]:.0f} → {rss[-1][1]:.0f} MiB ({'flat' if flat else '**grows**'})"


def chart(rows: list[Row], png: Path) -> None:
    """Draw every row's ratio as a bar with its goal as a marker into `png`. Raise ImportError
    without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r.metric}\n{r.profile} {r.size}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.9 * len(rows)), 5.5))
    colours = [{True: "#4c9a2a", False: "#c0392b", None: "#999999"}[r.met] for r in rows]
    ax.bar(range(len(rows)), [r.ratio for r in rows], color=colours)
    for i, r in enumerate(rows):
        if r.goal is not None:
            ax.hlines(r.goal, i - 0.4, i + 0.4, colors="black", linestyles="dashed")
        ax.text(i, r.ratio, f"{r.ratio:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("ratio to the baseline in the same run (dashed: goal)")
    ax.set_title("jujubackup benchmarks (green: goal met, red: missed, grey: reference, no goal)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--md", type=Path, help="write the markdown here too (default: stdout only)")
    parser.add_argument("--png", type=Path, help="chart file (default: RESULTS/report.png)")
    args = parser.parse_args(argv)
    try:
        rows = load(args.results)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown(rows)
    print(text, end="")
    if args.md:
        args.md.write_text(text)
    png = args.png or args.results / "report.png"
    try:
        chart(rows, png)
        print(f"chart: {png}", file=sys.stderr)
    except ImportError:
        print("no chart: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
