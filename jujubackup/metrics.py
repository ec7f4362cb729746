"""PURE: the Prometheus textfile `run --metrics-file` writes (node_exporter's textfile collector).

Text exposition format 0.0.4 (prometheus/docs content/docs/instrumenting/exposition_formats.md):
`# HELP` / `# TYPE` lines, then `name{label="value",…} value`; label values escape `\\`, `"` and
newlines. Every series is a gauge. One run rewrites the whole file, so a controller or store that
failed in this run keeps its last success time from the previous file (read back by
`last_successes`): an alert on `time() - jujubackup_controller_last_success_timestamp_seconds`
sees how long since it last worked, not a missing series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

PREFIX = "jujubackup_"
CONTROLLER_LAST_SUCCESS = "controller_last_success_timestamp_seconds"
STORE_LAST_SUCCESS = "store_last_success_timestamp_seconds"

HELP = {
    "run_timestamp_seconds": "When the last `jujubackup run` finished (Unix time).",
    "run_exit_code": "Exit code of the last `jujubackup run` (0 ok, 9 some controllers failed).",
    "controller_success": "1 if the controller's last pass (create, copy, verify, prune) succeeded, else 0.",
    "controller_exit_code": "Exit code of the controller's last pass (0 ok; jujubackup's exit code table).",
    "controller_last_run_timestamp_seconds": "When the controller's last pass ended (Unix time).",
    CONTROLLER_LAST_SUCCESS: "When the controller's last successful pass ended (Unix time).",
    "controller_duration_seconds": "How long the controller's last pass took.",
    "controller_backup_size_bytes": "Size of the backup the controller's last pass created.",
    "controller_pruned_backups": "Backups the controller's last pass pruned from its catalog.",
    "store_success": "1 if the last copy of the controller's backup to the store verified, else 0.",
    STORE_LAST_SUCCESS: "When a copy of the controller's backup last verified in the store (Unix time).",
    "store_duration_seconds": "How long the last copy to the store took (copy and verify).",
    "store_size_bytes": "Bytes stored by the last copy to the store.",
}

Labels = tuple[tuple[str, str], ...]
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class StoreSample:
    """One store's outcome for one controller in this run."""

    store: str
    ok: bool
    seconds: float
    size: int = 0


@dataclass(frozen=True)
class ControllerSample:
    """One controller's outcome in this run (ended: Unix time)."""

    controller: str
    ok: bool
    exit_code: int
    ended: float
    seconds: float
    size: int = 0
    pruned: int = 0
    stores: Sequence[StoreSample] = field(default_factory=tuple)


def escape(value: str) -> str:
    """Given a label value, return it escaped for the exposition format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return repr(float(value))


def last_successes(previous: str) -> dict[tuple[str, Labels], float]:
    """Given the previous metrics file's text (possibly empty or damaged: lines that do not parse
    are ignored), return {(metric without prefix, labels): value} of its last-success series."""
    wanted = {PREFIX + CONTROLLER_LAST_SUCCESS, PREFIX + STORE_LAST_SUCCESS}
    out: dict[tuple[str, Labels], float] = {}
    for line in previous.splitlines():
        match = _SAMPLE.match(line.strip())
        if match is None or match.group(1) not in wanted:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        labels = tuple(sorted((k, _unescape(v)) for k, v in _LABEL.findall(match.group(2) or "")))
        out[(match.group(1).removeprefix(PREFIX), labels)] = value
    return out


def _carry_forward(series: dict[str, list[tuple[Labels, float]]],
                   previous: Mapping[tuple[str, Labels], float]) -> None:
    """Add the previous last-success series of this run's controllers that this run did not reach
    (a store behind a failed create keeps its last success time too)."""
    controllers = {dict(labels)["controller"] for labels, _ in series["controller_success"]}
    for (name, labels), value in previous.items():
        emitted = {lab for lab, _ in series.get(name, [])}
        if name in series and labels not in emitted and dict(labels).get("controller") in controllers:
            series[name].append((labels, value))


def render(samples: Iterable[ControllerSample], *, finished: float, exit_code: int,
           previous: Mapping[tuple[str, Labels], float] | None = None) -> str:
    """Given this run's outcomes, when it finished, its exit code and the previous file's last
    successes (last_successes), return the metrics file's text (every series under PREFIX)."""
    series: dict[str, list[tuple[Labels, float]]] = {name: [] for name in HELP}
    previous = dict(previous or {})
    series["run_timestamp_seconds"].append(((), finished))
    series["run_exit_code"].append(((), exit_code))
    for s in samples:
        c: Labels = (("controller", s.controller),)
        series["controller_success"].append((c, int(s.ok)))
        series["controller_exit_code"].append((c, s.exit_code))
        series["controller_last_run_timestamp_seconds"].append((c, s.ended))
        series["controller_duration_seconds"].append((c, s.seconds))
        if s.ok or s.size:
            series["controller_backup_size_bytes"].append((c, s.size))
        series["controller_pruned_backups"].append((c, s.pruned))
        last = s.ended if s.ok else previous.get((CONTROLLER_LAST_SUCCESS, c))
        if last is not None:
            series[CONTROLLER_LAST_SUCCESS].append((c, last))
        for st in s.stores:
            labels: Labels = tuple(sorted((*c, ("store", st.store))))
            series["store_success"].append((labels, int(st.ok)))
            series["store_duration_seconds"].append((labels, st.seconds))
            if st.ok:
                series["store_size_bytes"].append((labels, st.size))
            last = s.ended if st.ok else previous.get((STORE_LAST_SUCCESS, labels))
            if last is not None:
                series[STORE_LAST_SUCCESS].append((labels, last))
    _carry_forward(series, previous)
    lines: list[str] = []
    for name, points in series.items():
        if not points:
            continue
        lines += [f"# HELP {PREFIX}{name} {HELP[name]}", f"# TYPE {PREFIX}{name} gauge"]
        for labels, value in points:
            text = ",".join(f'{k}="{escape(v)}"' for k, v in labels)
            labelled = f"{PREFIX}{name}{{{text}}}" if text else f"{PREFIX}{name}"
            lines.append(f"{labelled} {_number(value)}")
    return "\n".join(lines) + "\n"
