"""The drill's Query renders drill-query from the values it builds itself (not from hand samples)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from jujubackup import profiles, scripts
from jujubackup.drillreport import Check
from jujubackup.operations.drill import STAYS_ACTIVE, Query, _Drill


@pytest.mark.parametrize("profile", [p.name for p in profiles.PROFILES])
def test_query_values_render_drill_query(profile: str) -> None:
    backup = SimpleNamespace(
        backup_id="20260101-000000.0f0e0d0c-1111-4222-8333-444455556666", machine_id="0", state_port=37017
    )
    staged = cast(Any, SimpleNamespace(backup=backup, facts=SimpleNamespace(profile=profile)))
    query = Query(staged, "/var/lib/juju/backups old")
    text = scripts.render("drill-query", **query.values, units=query.units, statements=["db.version()"])
    assert "backup_dir='/var/lib/juju/backups old'" in text


class _Units:
    """A drill Query stand-in answering unit states from a script of states (one per call)."""

    def __init__(self, *states: str) -> None:
        self.units = ["juju-db.service", "jujud-machine-0.service"]
        self.states = list(states)

    def __call__(self, statements: list[str], units: list[str] | None = None) -> dict[str, Any]:
        return {"units": {self.units[1]: self.states.pop(0)}}


def _drill_with(check: Check) -> Any:
    return SimpleNamespace(report=SimpleNamespace(checks=[check]))


@pytest.mark.parametrize(("later", "ok"), [("active", True), ("activating", False), ("failed", False)])
def test_jujud_must_still_be_active_after_the_other_checks(later: str, ok: bool) -> None:
    import time

    drill = _drill_with(Check("jujud-active", True, 0.2, "jujud-machine-0.service is active"))
    _Drill.recheck_jujud(drill, cast(Any, _Units(later)), time.monotonic() - STAYS_ACTIVE)  # window over
    (check,) = drill.report.checks
    assert check.ok is ok
    assert ok or f"is {later} 1 s after it was active" in check.detail


def test_a_failed_jujud_check_is_not_probed_again() -> None:
    drill = _drill_with(Check("jujud-active", False, 30.0, "jujud-machine-0.service is failed"))
    _Drill.recheck_jujud(drill, cast(Any, _Units()), 0.0)  # no state left: a probe would fail the test
    assert drill.report.checks[0].detail == "jujud-machine-0.service is failed"
