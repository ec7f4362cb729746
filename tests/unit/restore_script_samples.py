"""Sample values of the restore-*.sh.j2 remote scripts (merged into script_samples.SAMPLES)."""

from __future__ import annotations

from typing import Any

_LIB_29: dict[str, Any] = {
    "journal_dir": "/var/lib/jujubackup-restore",
    "backup_id": "20260101-000000.0f0e0d0c-1111-4222-8333-444455556666",
    "db_service": "snap.juju-db.daemon",
    "machine_id": "0",
    "mongo_shell": "/snap/bin/juju-db.mongo",
    "state_port": 37017,
    "backup_dir": "/var/lib/juju/backups",
}
_LIB_28: dict[str, Any] = {
    **_LIB_29,
    "db_service": "juju-db",
    "machine_id": "2",
    "mongo_shell": "/usr/lib/juju/mongo3.2/bin/mongo",
}
_SNAPSHOT_PATHS = [
    "/var/lib/juju",
    "/var/snap/juju-db/common",
    "/etc/systemd/system/snap.juju-db.daemon.service",
]


def _both(step: str, **extra: Any) -> list[dict[str, Any]]:
    return [{**lib, "step": step, **extra} for lib in (_LIB_29, _LIB_28)]


RESTORE_SAMPLES: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    "restore-preflight": {
        "journal_dir": "/var/lib/jujubackup-restore",
        "endpoints": [["10.77.116.194", 17070], ["10.77.116.194", 37017]],
        "connect_timeout": 3,
        "state_paths": ["/var/lib/juju", "/var/snap/juju-db/common"],
        "mongods": ["/snap/bin/juju-db.mongod", "/usr/lib/juju/mongo3.2/bin/mongod"],
        "paths": ["/snap/bin/juju-db.mongorestore", "/var/lib/juju/db"],
    },
    "restore-journal": {"journal_dir": "/var/lib/jujubackup-restore"},
    "restore-journal-init": {"journal_dir": "/var/lib/jujubackup-restore"},
    "restore-journal-discard": {"journal_dir": "/var/lib/jujubackup-restore"},
    "restore-copy": {"source": "/var/lib/juju/backups/20261126-070000.u.tar.gz",
                     "archive": "/var/lib/jujubackup-restore/archive.tar.gz"},
    "restore-discard-push": {"archive": "/var/lib/jujubackup-restore/archive.tar.gz"},
    "restore-receive": {"journal_dir": "/var/lib/jujubackup-restore"},
    "restore-stage": [
        *_both("upload", sha256="0" * 64, overlay_sha256="1" * 64, check_sha256=True, use_stream=False),
        *_both("upload", sha256="0" * 64, overlay_sha256="", check_sha256=False, use_stream=True),
    ],
    "restore-stop": _both("stop-services"),
    "restore-snapshot": _both("snapshot", snapshot_paths=_SNAPSHOT_PATHS),
    "restore-untar": _both("untar-files"),
    "restore-install": _both(
        "install-services",
        files=[
            {
                "path": "/etc/systemd/system/jujud-machine-0.service",
                "mode": "0644",
                "content": "[Unit]\n",
                "replace": True,
            },
            {
                "path": "/etc/systemd/system/juju-db.service",
                "mode": "0644",
                "content": "it's\n",
                "replace": False,
            },
        ],
        snap_configpath="/var/snap/juju-db/common/juju-db.config",
    ),
    "restore-fresh-db": _both(
        "fresh-db",
        db_path="/var/snap/juju-db/common/db",
        server_pem="/var/snap/juju-db/common/server.pem",
        shared_secret="/var/snap/juju-db/common/shared-secret",
        new_address="10.201.0.50",
        extra_dirs=["/var/snap/juju-db/common/logs"],
    ) + _both("fresh-db", db_path="/var/snap/juju-db/common/db",
              server_pem="/var/snap/juju-db/common/server.pem",
              shared_secret="/var/snap/juju-db/common/shared-secret", new_address="10.201.0.50",
              extra_dirs=[], oplog=True, mongod_version="4.4.30"),
    "restore-load-db": _both(
        "load-db",
        mongorestore="/snap/bin/juju-db.mongorestore",
        batch_size=100,
    ) + _both("load-db", mongorestore="/snap/bin/juju-db.mongorestore", batch_size=100,
              tools_version="100.9.4", mongod_version="4.4.30"),
    "restore-start": _both("start-services"),
    "restore-verify": _both(
        "verify",
        api_port=17070,
        new_address="10.201.0.50",
        model_uuid="e2a6a1e5-abea-4393-8593-5a45ae53ab97",
        wait_seconds=60,
    ),
    "restore-cleanup": _both("cleanup"),
    "restore-restart": _both("restart"),
    "restore-rollback": _both("rollback", snapshot_paths=_SNAPSHOT_PATHS),
}
