"""The drill's Query renders drill-query from the values it builds itself (not from hand samples)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from jujubackup import profiles, scripts
from jujubackup.operations.drill import Query


@pytest.mark.parametrize("profile", [p.name for p in profiles.PROFILES])
def test_query_values_render_drill_query(profile: str) -> None:
    backup = SimpleNamespace(
        backup_id="20260101-000000.0f0e0d0c-1111-4222-8333-444455556666", machine_id="0", state_port=37017
    )
    staged = cast(Any, SimpleNamespace(backup=backup, facts=SimpleNamespace(profile=profile)))
    query = Query(staged, "/var/lib/juju/backups old")
    text = scripts.render("drill-query", **query.values, units=query.units, statements=["db.version()"])
    assert "BACKUP_DIR='/var/lib/juju/backups old'" in text
