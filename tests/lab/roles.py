"""machine-0 on a stand-in juju-db (test code): the mongo tools' login flags, and the role a restore
grants it before `mongorestore --oplogReplay` (Juju 2.x's `oploger`) with the two commands that grant
a role, for tests that run them by the wire protocol (tests/unit/test_standin_privileges.py) or
through the mongo shell and tools (tests/host/test_standins.py)."""

from __future__ import annotations

import json
from typing import Any

OPLOGER: dict[str, Any] = {
    "role": "oploger", "privileges": [{"resource": {"anyResource": True}, "actions": ["anyAction"]}],
}
"""Juju 2.x's role for mongorestore --oplogReplay: anyAction on anyResource (juju/juju
state/backups/db.go, 2.x mongoRestorer32.ensureOplogPermissions)."""


def login_args(port: int, user: str = "machine-0") -> list[str]:
    """The flags a mongo tool logs in with as `user` on 127.0.0.1:`port` (password on stdin)."""
    return ["--host", "127.0.0.1", "--port", str(port), "--username", user,
            "--authenticationDatabase", "admin"]


def grant_commands(role: dict[str, Any], user: str = "machine-0") -> list[tuple[str, dict[str, Any]]]:
    """Given a role ({"role": name, "privileges": [...]}), return the (database, command) pairs that
    create it in admin and grant it to `user`, in order."""
    return [
        ("admin", {"createRole": role["role"], "privileges": role["privileges"], "roles": []}),
        ("admin", {"grantRolesToUser": user, "roles": [{"role": role["role"], "db": "admin"}]}),
    ]


def grant_statements(role: dict[str, Any], user: str = "machine-0") -> list[str]:
    """The same commands as mongo shell statements, each printing its reply as one JSON line."""
    return [f"print(JSON.stringify(db.getSiblingDB({json.dumps(db)}).runCommand({json.dumps(cmd)})))"
            for db, cmd in grant_commands(role, user)]
