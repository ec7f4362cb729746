"""Sample values for every remote script template, keyed by template name (without `.sh.j2`).

Each template owner adds an entry for their templates; tests/unit/test_scripts.py renders every
template with these values and runs `shellcheck -s bash` on the result. A template without an entry
fails that test. A list of dicts renders the template once per dict (e.g. per profile).
"""

from __future__ import annotations

from typing import Any

from tests.unit.restore_script_samples import RESTORE_SAMPLES

SAMPLES: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    # helper HOST: detached jobs (jujubackup/host/ssh.py)
    "detached": {
        "base_dir": "/run/jujubackup",
        "job_dir": "/run/jujubackup/create-0a1b2c3d",
        "unit": "jujubackup-create-0a1b2c3d",
        "heartbeat_timeout": 15,
        "grace": 120,
        "wrapper_size": 2048,
        "job_size": 4096,
    },
    "detached_wrapper": {},
    "detached_poll": {"job_dir": "/run/jujubackup/create-0a1b2c3d", "wait_steps": 12, "poll_step": 0.02,
                      "launcher": "mkdir -p /run/jujubackup/create-0a1b2c3d\necho launched"},
    "put-writer": {},
    # helper HOST: transfers (jujubackup/transfer.py)
    "transfer-stat": [
        {"path": "/var/lib/juju/backups/.upload-x.tar.gz.part", "prefix": -1},
        {"path": "/var/lib/juju/backups/20261126-070000.u.tar.gz", "prefix": 1048576},
    ],
    "transfer-remove": {"path": "/var/lib/juju/backups/.upload-x.tar.gz.part"},
}

# helper RESTORE: restore-*.sh.j2 (values in tests/unit/restore_script_samples.py)
SAMPLES.update(RESTORE_SAMPLES)

# helper CREATE: probe, create, catalog-* (values in tests/unit/create_script_samples.py)
from tests.unit.create_script_samples import CREATE_SAMPLES  # noqa: E402

SAMPLES.update(CREATE_SAMPLES)

SAMPLES.update({
    "repoint-list": {
        "shells": ["/snap/bin/juju-db.mongo", "/usr/lib/juju/mongo3.2/bin/mongo"],
        "record_path": "/var/lib/jujubackup/restored-controller.json",
        "record_max": 65536,
        "known_shell": "/snap/bin/juju-db.mongo",
        "known_shell_version": "4.4.30",
    },
    "restore-record": {
        "path": "/var/lib/jujubackup/restored-controller.json",
        "record": '{"controller-uuid": "c", "demoted": ["1", "2"], "machine": "0"}',
    },
    "repoint-machine": [
        {"addresses": ["10.0.0.5:17070", "[fd00::5]:17070"], "dry_run": False, "wait_seconds": 120},
        {"addresses": ["10.0.0.5:17070"], "dry_run": True, "wait_seconds": 0},
    ],
})

# helper DRILL: drill-*.sh.j2 (values in tests/unit/drill_script_samples.py)
from tests.unit.drill_script_samples import DRILL_SAMPLES  # noqa: E402

SAMPLES.update(DRILL_SAMPLES)
