"""Sample values for the drill's remote scripts (drill-*.sh.j2), for tests/unit/test_scripts.py."""

from __future__ import annotations

from typing import Any

from tests.unit.restore_script_samples import RESTORE_SAMPLES

_LIBS = [{k: v for k, v in s.items() if k != "step"} for s in RESTORE_SAMPLES["restore-start"]]  # type: ignore[union-attr]

DRILL_SAMPLES: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    "drill-isolate": [
        {
            "drill_dir": "/var/lib/jujubackup-drill",
            "backup_id": "20260101-000000.0f0e0d0c-1111-4222-8333-444455556666",
            "controller_uuid": "0f0e0d0c-1111-4222-8333-444455556666",
            "model_uuids": ["0f0e0d0c-1111-4222-8333-444455556666"],
            "probes": [["10.201.0.11", 17070], ["10.201.0.11", 37017]],
            "api_port": 17070,
            "force": force,
            "bootstrapped": not force,
        }
        for force in (False, True)
    ],
    "drill-query": [
        {
            **lib,
            "journal_dir": "/var/lib/jujubackup-drill",
            "step": "drill",
            "units": ["jujud-machine-0.service"],
            "statements": ['db.getSiblingDB("juju").runCommand({"count": "models"})'],
        }
        for lib in _LIBS
    ],
    "drill-finish": {
        "drill_dir": "/var/lib/jujubackup-drill",
        "units": ["snap.juju-db.daemon.service", "jujud-machine-0.service"],
        "keep": False,
    },
}
