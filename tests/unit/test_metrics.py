"""metrics.render / last_successes (run --metrics-file) and run's exit code."""

from __future__ import annotations

from jujubackup.metrics import ControllerSample, StoreSample, escape, last_successes, render
from jujubackup.operations.run import ControllerRun, run_exit_code


def test_render_then_carry_the_last_success_of_what_failed() -> None:
    a_ok = ControllerSample("a", True, 0, 1000.0, 12.5, 4096, 2, (StoreSample("s3", True, 3.0, 4200),))
    first = render([a_ok, ControllerSample("b", True, 0, 1001.0, 10.0, 2048)], finished=1002.0, exit_code=0)
    assert 'jujubackup_controller_last_success_timestamp_seconds{controller="a"} 1000' in first
    assert 'jujubackup_store_size_bytes{controller="a",store="s3"} 4200' in first
    assert "# TYPE jujubackup_controller_success gauge" in first
    assert "jujubackup_run_exit_code 0" in first
    second = render([ControllerSample("a", False, 3, 2000.0, 5.0),
                     ControllerSample("b", True, 0, 2001.0, 9.0, 1024, 0, (StoreSample("s3", False, 1.0),))],
                    finished=2002.0, exit_code=9, previous=last_successes(first))
    lines = set(second.splitlines())
    assert 'jujubackup_controller_success{controller="a"} 0' in lines
    assert 'jujubackup_controller_exit_code{controller="a"} 3' in lines
    assert 'jujubackup_controller_last_success_timestamp_seconds{controller="a"} 1000' in lines  # kept
    assert 'jujubackup_store_last_success_timestamp_seconds{controller="a",store="s3"} 1000' in lines
    assert 'jujubackup_controller_last_success_timestamp_seconds{controller="b"} 2001' in lines
    assert 'jujubackup_store_success{controller="b",store="s3"} 0' in lines
    size_a = 'jujubackup_controller_backup_size_bytes{controller="a"}'
    assert not [line for line in lines if line.startswith(size_a)]
    assert "jujubackup_run_exit_code 9" in lines
    # a controller no longer in the config is dropped
    third = render([ControllerSample("b", True, 0, 3000.0, 1.0, 1)], finished=3001.0, exit_code=0,
                   previous=last_successes(second))
    assert 'controller="a"' not in third


def test_label_values_are_escaped_and_damaged_files_are_ignored() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    text = render([ControllerSample('x"y', True, 0, 5.0, 1.0, 1)], finished=6.0, exit_code=0)
    assert 'controller="x\\"y"' in text
    key = ("controller_last_success_timestamp_seconds", (("controller", 'x"y'),))
    assert last_successes(text) == {key: 5.0}
    junk = "garbage\njujubackup_controller_last_success_timestamp_seconds{controller=\"a\"} NaN\n\x00"
    assert last_successes(junk) == {}


def test_run_exit_code() -> None:
    ok, bad3 = ControllerRun("a", ok=True), ControllerRun("b", exit_code=3)
    bad8 = ControllerRun("c", exit_code=8)
    assert run_exit_code([ok]) == 0
    assert run_exit_code([ok, bad3]) == 9
    assert run_exit_code([bad3]) == 3
    assert run_exit_code([bad3, ControllerRun("d", exit_code=3)]) == 3
    assert run_exit_code([bad3, bad8]) == 9
