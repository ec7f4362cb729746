"""benchmarks.report and the benchmarks' shared parsing: rows, goals, the scale verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import common, report
from benchmarks.create import main as create_main
from benchmarks.create import phases


def doc(
    rows: list[dict[str, object]], benchmark: str = "create", profile: str = "juju-2.9"
) -> dict[str, object]:
    return {"benchmark": benchmark, "profile": profile, "ran": "2026-12-03T08:00:00Z", "results": rows}


def row(size: str, ratio: float, per_gib: float, rss: float | None = None, **kw: object) -> dict[str, object]:
    base = {
        "metric": "create online vs by hand (pigz)",
        "size": size,
        "bytes": common.parse_size(size),
        "ratio": ratio,
        "goal": 1.1,
        "better": "lower",
        "ours_s_per_gib": per_gib,
        "peak_rss_mib": rss,
    }
    return {**base, **kw}


def test_sizes_parse_in_order_and_refuse_garbage() -> None:
    assert common.parse_sizes("256MiB, 1GiB,4GiB") == [
        ("256MiB", 1 << 28),
        ("1GiB", 1 << 30),
        ("4GiB", 1 << 32),
    ]
    for bad in ("", "1 GiB x", "-1G", "1PB"):
        with pytest.raises(ValueError):
            common.parse_sizes(bad)


def test_goal_direction_decides_met() -> None:
    lower = report.rows_of(doc([row("1GiB", 1.18, 10.0)]))[0]
    higher = report.rows_of(doc([row("1GiB", 0.92, 3.0, goal=0.9, better="higher")], "transfer"))[0]
    assert lower.met is False and higher.met is True
    assert report.rows_of(doc([row("1GiB", 5.0, 1.0, goal=None)]))[0].met is None


def test_markdown_marks_missed_goals_and_spread_beyond_twenty_percent(tmp_path: Path) -> None:
    (tmp_path / "create-juju-2.9.json").write_text(
        json.dumps(
            doc(
                [
                    row("256MiB", 1.05, 10.0, 60),
                    row("1GiB", 1.2, 10.5, 62),
                    row("4GiB", 1.1, 13.0, 200),
                ]
            )
        )
    )
    text = report.markdown(report.load(tmp_path))
    assert "| create online vs by hand (pigz) | juju-2.9 | 1GiB | 1.20× | — | ≤ 1.1× | **no** |" in text
    assert "| create online vs by hand (pigz) | juju-2.9 | 256MiB | 1.05× | — | ≤ 1.1× | yes |" in text
    scale = text.split("peak RSS growth |")[1]
    assert "24% (**beyond**)" in scale and "60 → 200 MiB (**grows**)" in scale


def test_rows_without_ratio_or_results_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no `results`"):
        report.rows_of({"benchmark": "old"})
    with pytest.raises(ValueError, match="without metric"):
        report.rows_of(doc([{"metric": "x", "size": "1GiB"}]))
    assert report.main(["--results", str(tmp_path)]) == 2


def test_create_phases_from_progress_lines() -> None:
    stderr = "\n".join(
        [
            "[0.4s] lock taken",
            "[1.0s] dumping juju-db (mongodump --oplog)",
            "[9.0s] collecting state files (root.tar)",
            "[9.5s] writing metadata",
            "[9.7s] compressing the archive (pigz) and hashing its members",
            "[15.0s] stored /var/lib/juju/backups/x.tar.gz (1 bytes)",
            "unrelated",
        ]
    )
    took = phases(stderr, 17.0)
    assert took == {
        "dump": 8.0,
        "root.tar": 0.5,
        "metadata": 0.2,
        "compress+hash": 5.3,
        "before-dump": 1.0,
        "client+connect": 2.0,
    }
    assert phases("nothing", 3.0) == {}


def test_transfer_rows_keep_the_default_ssh_goal_and_add_the_gcm_reference_with_best_rounds() -> None:
    from benchmarks import transfer

    seconds = {"ssh_down": [4.0, 2.0, 3.0], "ssh_down_gcm": [2.0, 1.5, 2.5], "jb_down": [5.0, 2.0, 4.0],
               "ssh_up": [3.0, 3.0, 3.0], "ssh_up_gcm": [2.0, 2.0, 2.0], "jb_up": [6.0, 4.0, 5.0],
               "jb_up_verified": [3.0, 3.0, 3.0]}
    result = {"seconds": seconds, "peak_rss_MiB": {}}
    by_metric = {r["metric"]: r for r in transfer.rows("1GiB", 1 << 30, result)}
    assert by_metric["download vs ssh cat"]["goal"] == 0.9
    assert by_metric["download vs ssh cat"]["ratio"] == 0.75  # median 3.0 / 4.0
    assert by_metric["download vs ssh cat"]["best_round_ratio"] == 1.0  # round 2: 2.0 / 2.0
    gcm = by_metric["upload (never verified) vs ssh -c aes128-gcm cat"]
    assert gcm["goal"] is None and gcm["ratio"] == 0.4 and gcm["best_round_ratio"] == 0.5
    old = {"seconds": {k: v for k, v in seconds.items() if not k.endswith("_gcm")}, "peak_rss_MiB": {}}
    assert len(transfer.rows("1GiB", 1 << 30, old)) == 3


def test_compare_source_needs_its_own_templates(tmp_path: Path) -> None:
    """A source tree without jujubackup/remote_scripts would render this checkout's templates (the
    editable install maps the package here) with the older code: refused on the command line."""
    (tmp_path / "jujubackup").mkdir()
    with pytest.raises(SystemExit):
        create_main(["--compare-source", str(tmp_path)])
    (tmp_path / "jujubackup" / "remote_scripts").mkdir()
    assert common.compare_source(str(tmp_path)) == tmp_path


def test_create_timed_reads_the_peak_rss_of_its_own_child() -> None:
    """create's rows carry the client's peak RSS per size (issue 18): that child's own, so a child
    holding 96 MiB reports at least that, and one holding little reports far less even while this
    (pytest) process holds more than 60 MiB, which a plain wait4 here would count."""
    import sys

    from benchmarks import create

    touch = "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096])"  # calloc'd pages count once written
    _s, done, big = create.timed([sys.executable, "-c", touch])
    assert done.returncode == 0 and big >= 96
    ballast = bytearray(64 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    _s, done, small = create.timed([sys.executable, "-c", "import sys; print(sys.stdin.read())"], stdin="hi")
    assert done.stdout == "hi\n" and small < 60
    with pytest.raises(RuntimeError):
        create.timed([sys.executable, "-c", "raise SystemExit(3)"])


def test_create_rows_feed_the_scale_table(tmp_path: Path) -> None:
    """Each size's create rows carry s/GiB and the peak RSS of create and of by hand's ssh; with
    three sizes the report's scale table has a create row with the spread and the RSS verdict."""
    from benchmarks import create

    rows: list[dict[str, object]] = []
    for label, size, ours, rss in (("256MiB", 1 << 28, 3.0, 70.0), ("1GiB", 1 << 30, 9.0, 75.0),
                                   ("4GiB", 1 << 32, 36.0, 80.0)):
        result = {"median_seconds": {"create_online": ours, "by_hand_pigz": ours / 1.2, "by_hand_gzip": ours},
                  "ratio_vs_by_hand_pigz": 1.2, "ratio_vs_by_hand_gzip": 1.0, "db_bytes": size,
                  "load_average": [2.0, 2.0, 2.0],
                  "peak_rss_mib": {"create_online": rss, "by_hand_pigz": 9.0}}
        rows += create.rows(label, result)
    pigz = [r for r in rows if r["metric"] == "create online vs by hand (pigz)"]
    assert [r["ours_s_per_gib"] for r in pigz] == [12.0, 9.0, 9.0]
    assert [r["peak_rss_mib"] for r in pigz] == [70.0, 75.0, 80.0]
    assert pigz[0]["baseline_peak_rss_mib"] == 9.0
    (tmp_path / "create-juju-2.9.json").write_text(json.dumps(doc(rows)))
    text = report.markdown(report.load(tmp_path))
    assert ("| create online vs by hand (pigz) | juju-2.9 | 256MiB, 1GiB, 4GiB | 33% (**beyond**) | "
            "70 → 80 MiB (flat) |") in text


def test_transfer_and_run_read_the_peak_rss_of_their_own_child() -> None:
    """The transfer and run benchmarks report the client's own peak RSS too, not at least this
    (pytest) process's, which a plain wait4 of a forked child counts."""
    import sys

    from benchmarks import run, transfer

    ballast = bytearray(64 << 20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    touch = "b = bytearray(96 << 20); b[::4096] = b'x' * len(b[::4096])"
    big = transfer.timed([sys.executable, "-c", touch])
    assert big.returncode == 0 and big.rss_kib >= 96 << 10
    small = transfer.timed([sys.executable, "-c", "pass"])
    assert small.returncode == 0 and small.rss_kib < 60 << 10
    _s, out, small_kib = run.peak_rss_run([sys.executable, "-c", "print('hi')"])
    assert out == "hi\n" and small_kib < 60 << 10
    assert transfer.timed([sys.executable, "-c", "raise SystemExit(3)"]).returncode == 3


def test_transfer_timed_counts_the_cpu_of_the_command_and_its_children() -> None:
    """The CPU seconds of a timed command include its children's (the verifying process, `ssh`),
    not this process's, and the machine's busy fraction is a fraction."""
    import sys

    from benchmarks import transfer

    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}], check=True)"
    busy = transfer.timed([sys.executable, "-c", child])
    assert busy.returncode == 0 and busy.client_cpu >= 0.5
    assert 0.0 < busy.machine_busy <= 1.0
    idle = transfer.timed([sys.executable, "-c", "import time; time.sleep(0.5)"])
    assert idle.client_cpu < 0.3 and idle.host_cpu == 0.0


def test_cgroup_cpu_seconds_reads_the_first_readable_cpu_stat(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    assert common.cgroup_cpu_seconds([str(tmp_path / "gone"), str(tmp_path)]) == 2.5
    assert common.cgroup_cpu_seconds([str(tmp_path / "gone")]) == 0.0


def test_quartiles_interpolate_between_sorted_values() -> None:
    assert common.quartiles([3.0]) == (3.0, 3.0, 3.0)
    assert common.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert common.quartiles([1.0, 2.0, 3.0, 4.0]) == (1.75, 2.5, 3.25)
    with pytest.raises(ValueError):
        common.quartiles([])


def test_paired_ratios_divide_each_round_by_its_own_baseline() -> None:
    """A slow round on both sides (the load rose) is a ratio of 1, not a swing of the medians: the
    ratio of medians here is 12/10 = 1.2, each round is 1.0 except one at 2.0."""
    ours = [10.0, 30.0, 12.0, 20.0, 8.0]
    hand = [10.0, 30.0, 6.0, 20.0, 8.0]
    p = common.paired(ours, hand)
    assert p["ratios"] == [1.0, 1.0, 2.0, 1.0, 1.0]
    assert (p["q1"], p["median"], p["q3"]) == (1.0, 1.0, 1.0)
    assert common.paired([3.0, 1.0], [2.0, 4.0]) == {"ratios": [1.5, 0.25], "median": 0.875,
                                                      "q1": 0.562, "q3": 1.188}
    for ours_s, hand_s in (([1.0], [1.0, 2.0]), ([], []), ([1.0], [0.0])):
        with pytest.raises(ValueError):
            common.paired(ours_s, hand_s)


def test_step_medians_keep_first_seen_order_and_skip_missing_steps() -> None:
    runs = [{"prepare": 1.0, "upload": 3.0}, {"prepare": 2.0, "upload": 5.0, "snapshot": 0.4},
            {"upload": 4.0, "prepare": 9.0}]
    assert common.step_medians(runs) == {"prepare": 2.0, "upload": 4.0, "snapshot": 0.4}
    assert common.step_medians([]) == {}


def test_restore_by_hand_steps_from_the_scripts_time_marks() -> None:
    from benchmarks.restore import hand_steps

    steps = hand_steps(3.0, 10.5, [100.0, 102.0, 102.5, 110.0])
    assert steps == {"push": 3.0, "ssh": 0.5, "unpack": 2.0, "untar-files": 0.5, "load-db": 7.5}
    with pytest.raises(ValueError):
        hand_steps(3.0, 10.0, [100.0, 101.0])


def test_restore_rows_carry_the_paired_ratios_the_report_shows(tmp_path: Path) -> None:
    from benchmarks import restore

    result = {"median_jujubackup_s": 12.0, "median_by_hand_s": 10.0, "ratio": 1.2,
              "paired": common.paired([12.0, 11.0, 30.0], [10.0, 10.0, 20.0]),
              "load_average_before": (1.5, 1.0, 1.0), "load_average": (2.25, 1.0, 1.0)}
    rows = restore.rows("1GiB", 1 << 30, result)
    assert [r["metric"] for r in rows] == ["DR restore (verify passed) vs by hand"]  # --verified-only
    assert rows[0]["paired_median"] == 1.2 and rows[0]["load"] == "1.5→2.2"
    (tmp_path / "restore-juju-3.6.json").write_text(json.dumps(doc(rows, "restore", "juju-3.6")))
    text = report.markdown(report.load(tmp_path))
    assert "| juju-3.6 | 1GiB | 1.20× | 1.20× (1.15–1.35) | ≤ 1.2× | yes |" in text


def test_compile_packages_writes_each_pyc_and_refuses_a_module_that_does_not_compile(tmp_path: Path) -> None:
    package = tmp_path / "jujubackup"
    package.mkdir()
    (package / "good.py").write_text("X = 1\n")
    common.compile_packages([package])
    assert [p.name.split(".")[0] for p in (package / "__pycache__").iterdir()] == ["good"]
    (package / "bad.py").write_text("def (:\n")
    with pytest.raises(RuntimeError, match="does not compile"):
        common.compile_packages([package])
