"""Sample values of helper CREATE's remote scripts (probe, create, catalog-*), read by test_scripts.py."""

from __future__ import annotations

from typing import Any

from jujubackup import facts, profiles
from jujubackup.scripts import BashValue

BACKUP_ID = "20261126-070000.ffffffff-0000-1111-2222-333333333333"


def _create_sample(profile: profiles.Profile, mode: str) -> dict[str, Any]:
    """Sample values of create.sh.j2 for one profile and mode."""
    return {
        "backup_id": BACKUP_ID,
        "backup_dir": profiles.DEFAULT_BACKUP_DIR,
        "mode": mode,
        "tag": "machine-0",
        "state_port": 37017,
        "db_service": profile.db_service,
        "jujud_service": profile.jujud_service("0"),
        "mongod": profile.mongod,
        "mongodump": profile.mongodump,
        # the probe's reading of mongodump --version: none (create asks again), or hostile text
        "tools_version": "" if mode == "stop" else "100.9.4 '\"; x",
        "db_path": profile.db_path,
        "stop_port": 41234,
        "dump_scratch_dir": profile.dump_scratch_dir or "",
        "exclude_logs": mode == "quiesce",
        "holder": "me@ws jujubackup create",
        "run_token": "0a1b2c3d",
        "heartbeat_fresh_ms": 1000,
        "dump_flags": profile.dump_flags,
        "ignored_dbs": profile.ignored_dbs,
        "root_files": profile.root_files,
        "metadata_json": '{"ID": "x", "Notes": "it\'s \\"quoted\\" $(rm -rf /) `x`"}',
        "manifest_json": {
            "format-version": 1, "files": BashValue("files"), "profile": "it's $(x)",
            "service-windows": BashValue("windows"), "db-unavailable-seconds": BashValue("down_seconds"),
            "dump-documents": BashValue("documents"),
        },
        "record_json": {
            "ID": "x", "Size": BashValue("size"), "Checksum": BashValue("checksum", string=True),
            "Stored": BashValue("finished", string=True), "sha256": BashValue("sha256", string=True),
            "manifest": {"files": BashValue("file_count"), "service-windows": BashValue("windows")},
        },
    }


CREATE_SAMPLES: dict[str, dict[str, Any] | list[dict[str, Any]]] = {
    "probe": {
        "backup_dir": profiles.DEFAULT_BACKUP_DIR,
        "restore_journal_dir": profiles.RESTORE_JOURNAL_DIR,
        "paths": profiles.probe_paths(),
        "profiles": profiles.PROFILES,
        "estimate_dbs": facts.ESTIMATE_DBS,
        "max_models": facts.MAX_MODELS,
    },
    "create": [_create_sample(p, m) for p in profiles.PROFILES for m in profiles.MODES],
    "catalog-list": {"backup_dir": profiles.DEFAULT_BACKUP_DIR},
    "catalog-remove": {
        "backup_dir": profiles.DEFAULT_BACKUP_DIR,
        "holder": "me@ws jujubackup remove",
        "ids": [BACKUP_ID, "x y"],
    },
    "upload-prepare": {
        "backup_dir": profiles.DEFAULT_BACKUP_DIR,
        "backup_id": BACKUP_ID,
        "staged": "/var/lib/juju/backups/.upload-x.tar.gz.part",
        "size": 123456,
        "agents_dir": "/var/lib/juju/agents",
    },
    "catalog-register": {
        "backup_dir": profiles.DEFAULT_BACKUP_DIR,
        "holder": "me@ws jujubackup upload",
        "backup_id": BACKUP_ID,
        "staged": "/var/lib/juju/backups/.upload-x.tar.gz.part",
        "sha256": "0" * 64,
        "staged_sha256": "",
        "size": 1234,
        "force": False,
        "record_json": '{"ID": "x"}',
    },
}
