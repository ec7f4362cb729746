"""The lab's juju-db stand-in checks privileges per command as MongoDB does (tests/lab/standins/authz.py):
Juju's roles for its machine users, user-defined roles, and what `mongorestore --oplogReplay`'s applyOps
needs on each generation. A real stand-in mongod (a process on a loopback port, --auth) and the real
mongorestore stand-in of each generation."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest

from jujubackup import scripts
from tests.lab.roles import OPLOGER, grant_commands, login_args
from tests.lab.standins import common

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "lab-test-password-0"  # a throwaway server of this test only
SAMPLE_VALUES: dict[str, Any] = {
    "journal_dir": "/var/lib/jujubackup-restore",
    "step": "load-db",
    "backup_id": "b",
    "db_service": "juju-db",
    "machine_id": "0",
    "mongo_shell": "/usr/bin/mongo",
    "state_port": 37017,
    "backup_dir": "/var/lib/juju/backups",
    "batch_size": 100,
}


def product_role(version: str) -> dict[str, Any]:
    """The role the product's load-db step creates for the replay on juju-db `version`: its own bash
    (remote_scripts/restore-load-db.sh.j2 replay_privileges), run here."""
    text = scripts.render("restore-load-db", **{**SAMPLE_VALUES, "mongorestore": "/usr/bin/mongorestore"})
    start = text.index("replay_privileges() {")
    func = text[start : text.index("\n}\n", start) + 3]
    out = subprocess.run(["bash", "-c", f"{func}replay_privileges {version}"], capture_output=True, text=True)
    return {"role": "jujubackup-oplog-replay", "privileges": json.loads(out.stdout)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(sock: socket.socket, db: str, cmd: dict[str, Any]) -> dict[str, Any]:
    return common.command(sock, db, cmd)


@contextlib.contextmanager
def mongod(tmp_path: Path, key: str) -> Iterator[int]:
    """A stand-in mongod of generation `key` with --auth, initiated as a one-member replica set, with
    machine-0 holding Juju's roles (created through the localhost exception, as Juju bootstraps)."""
    port = free_port()
    (tmp_path / "db").mkdir()
    code = (
        "import sys; from tests.lab.standins import mongod; k = sys.argv.pop(1); "
        "sys.exit(mongod.main(sys.argv[1:], k))"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            key,
            "--dbpath",
            str(tmp_path / "db"),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--replSet",
            "juju",
            "--auth",
            "--logpath",
            str(tmp_path / "mongod.log"),
        ],
        cwd=ROOT,
    )
    try:
        sock = None
        for _ in range(200):
            with contextlib.suppress(OSError):
                sock = common.connect("127.0.0.1", port, None)
                break
            time.sleep(0.05)
        assert sock is not None, "the stand-in mongod did not answer"
        with sock:
            cfg = {"_id": "juju", "version": 1, "members": [{"_id": 1, "host": f"127.0.0.1:{port}"}]}
            assert run(sock, "admin", {"replSetInitiate": cfg})["ok"]
            for _ in range(200):  # the set elects its primary after the initiate's reply
                reply = run(
                    sock, "admin", {"createUser": "machine-0", "pwd": PASSWORD, "roles": common.JUJU_ROLES}
                )
                if reply.get("codeName") != "NotWritablePrimary":
                    break
                time.sleep(0.05)
            assert reply["ok"], reply
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def login(port: int) -> socket.socket:
    sock = common.connect("127.0.0.1", port, None)
    assert run(sock, "admin", {"authenticate": 1, "user": "machine-0", "pwd": PASSWORD})["ok"]
    return sock


def mongorestore(
    tmp_path: Path, key: str, port: int, entries: list[dict[str, Any]]
) -> subprocess.CompletedProcess:
    """`mongorestore --oplogReplay` of a dump holding only oplog.bson, as machine-0 (password on stdin)."""
    dump = tmp_path / "dump"
    dump.mkdir(exist_ok=True)
    (dump / "oplog.bson").write_bytes(b"".join(bson.encode(e) for e in entries))
    code = (
        "import sys; from tests.lab.standins import tools; sys.exit(tools.mongorestore_main(sys.argv.pop(1)))"
    )
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            key,
            *login_args(port),
            "--oplogReplay",
            str(dump),
        ],
        cwd=ROOT,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def grant(port: int, role: dict[str, Any]) -> None:
    with login(port) as sock:
        for db, cmd in grant_commands(role):
            reply = run(sock, db, cmd)
            assert reply["ok"], reply


def machine_insert(n: int) -> dict[str, Any]:
    return {
        "ts": bson.Timestamp(1_700_000_000, n),
        "t": bson.Int64(1),
        "h": bson.Int64(0),
        "v": 2,
        "op": "i",
        "ns": "juju.machines",
        "o": {"_id": f"m{n}", "life": 0},
    }


USER_UPDATE = {
    "ts": bson.Timestamp(1_700_000_000, 9),
    "t": bson.Int64(1),
    "h": bson.Int64(0),
    "v": 2,
    "op": "u",
    "ns": "admin.system.users",
    "o": {"$set": {"customData": {"k": 1}}},
    "o2": {"_id": "admin.machine-0"},
}
"""A user changed during the dump (an agent's password change is an update of admin.system.users)."""


def test_3_2_applyops_needs_every_privilege_even_for_a_plain_insert(tmp_path: Path) -> None:
    with mongod(tmp_path, "3.2") as port:
        out = mongorestore(tmp_path, "3.2", port, [machine_insert(1)])
        assert out.returncode == 1
        assert (
            "Failed: error applying oplog: applyOps: not authorized on admin to execute command "
            '{ applyOps: [ { ts: Timestamp(1700000000, 1), h: 0, v: 2, op: "i", ns: "juju.machines"'
            in out.stderr
        )
        with login(port) as sock:
            assert run(sock, "juju", {"find": "machines"})["cursor"]["firstBatch"] == []
        role = product_role("3.2.22")
        assert role["privileges"] == OPLOGER["privileges"]  # Juju 2.x's oploger: 3.2 leaves no choice
        grant(port, role)
        out = mongorestore(tmp_path, "3.2", port, [machine_insert(1)])
        assert out.returncode == 0, out.stderr
        with login(port) as sock:
            assert [d["_id"] for d in run(sock, "juju", {"find": "machines"})["cursor"]["firstBatch"]] == [
                "m1"
            ]


@pytest.mark.parametrize("key", ["3.6", "4.0", "4.4"])
def test_from_3_6_juju_roles_replay_normal_collections_but_not_a_user_change(
    tmp_path: Path, key: str
) -> None:
    with mongod(tmp_path, key) as port:
        out = mongorestore(tmp_path, key, port, [machine_insert(1), USER_UPDATE, machine_insert(2)])
        assert out.returncode == 1
        code = "(Unauthorized) " if key == "4.4" else ""
        assert (
            f"Failed: error applying oplog: applyOps: {code}not authorized on admin to execute command "
            "{ applyOps: [ { ts: Timestamp(1700000000, 9)" in out.stderr
        ), out.stderr
        with login(port) as sock:  # the entries before it were applied, the one after not
            assert [d["_id"] for d in run(sock, "juju", {"find": "machines"})["cursor"]["firstBatch"]] == [
                "m1"
            ]
        grant(port, product_role({"3.6": "3.6.3", "4.0": "4.0.9", "4.4": "4.4.18"}[key]))
        out = mongorestore(tmp_path, key, port, [machine_insert(1), USER_UPDATE, machine_insert(2)])
        assert out.returncode == 0, out.stderr
        with login(port) as sock:
            users = run(sock, "admin", {"find": "system.users"})["cursor"]["firstBatch"]
            assert users[0]["customData"] == {"k": 1}


def test_juju_roles_and_user_defined_roles_per_command(tmp_path: Path) -> None:
    with mongod(tmp_path, "4.4") as port, login(port) as sock:
        # Juju's machine users read the oplog (mongodump --oplog) and any normal collection
        assert run(sock, "local", {"find": "oplog.rs"})["ok"]
        # but write no system collection of admin, and cannot run a command needing all privileges
        denied = run(sock, "admin", {"insert": "system.users", "documents": [{"_id": "x"}]})
        assert (denied["code"], denied["codeName"]) == (13, "Unauthorized")
        assert denied["errmsg"].startswith(
            'not authorized on admin to execute command { insert: "system.users"'
        )
        assert not run(sock, "admin", {"applyOps": []})["ok"]  # an empty applyOps needs all privileges
        # userAdminAnyDatabase may create and grant a role; the grant counts at the next command
        grant(port, product_role("4.4.18"))
        assert run(sock, "admin", {"insert": "system.users", "documents": [{"_id": "x"}]})["ok"]
        # dropping the role takes it from the user too
        assert run(sock, "admin", {"dropRole": "jujubackup-oplog-replay"})["ok"]
        (user,) = [
            u
            for u in run(sock, "admin", {"find": "system.users"})["cursor"]["firstBatch"]
            if u.get("user") == "machine-0"
        ]
        assert user["roles"] == common.JUJU_ROLES
        assert run(sock, "admin", {"find": "system.roles"})["cursor"]["firstBatch"] == []
        assert not run(sock, "admin", {"insert": "system.users", "documents": [{"_id": "y"}]})["ok"]
