"""The lab's MongoDB stand-ins held to the real tools' contract, run locally (no containers).

The stand-ins run under /usr/bin/python3 with Debian's python3-bson, as on the lab hosts; their
output is decoded here with pymongo's bson.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bson
import pytest

from tests.lab import provision
from tests.lab.roles import OPLOGER, grant_statements, login_args
from tests.lab.standins import storage
from tests.paths import VALID_28

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

HOST_PYTHON = "/usr/bin/python3"
SERIES = {"juju-2.9": "4.4", "juju-2.8": "3.2"}


def _host_python_ok() -> None:
    r = subprocess.run(
        [HOST_PYTHON, "-c", "import bson; bson.BSON.encode({}); bson.decode_all(b'')"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.fail(
            f"{HOST_PYTHON} cannot import bson (apt-get install python3-bson): {r.stderr.strip()}",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Env:
    """Stand-ins installed under `root` for one profile, plus a seeded cluster identity."""

    root: Path
    profile: str
    cluster: provision.Cluster

    def tool(self, name: str) -> str:
        return str(self.root / provision.PROFILES[self.profile].tools[name].lstrip("/"))

    @property
    def password(self) -> str:
        return self.cluster.passwords["0"]

    def tls(self) -> list[str]:
        return (
            ["--ssl", "--tlsInsecure"]  # tools 100.x: --ssl* + --tlsInsecure, no --tls
            if SERIES[self.profile] == "4.4"
            else ["--ssl", "--sslAllowInvalidCertificates"]
        )

    def ns_exclude(self, dump: Path, *dbs: str) -> list[str]:
        """Leave `dbs` out of a restore that replays the oplog: drop them from `dump` and return no
        flags. mongorestore refuses --nsExclude with --oplogReplay ("cannot use --oplogReplay with
        excludes specified", mongo-tools mongorestore.go ParseAndValidateOptions), and 3.2 has no
        --nsExclude at all."""
        for db in dbs:
            shutil.rmtree(dump / db, ignore_errors=True)
        return []

    def conn(self, port: int, user: str = "machine-0") -> list[str]:
        return [*login_args(port, user), *self.tls()]

    def run(self, name: str, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tool(name), *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
        )

    def shell(
        self,
        port: int,
        statements: list[str],
        password: str | None = None,
        auth: bool = True,
        tmp: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run statements through the shell as jujubackup does: a 0600 JS file, auth first."""
        lines = []
        if auth:
            lines.append(f'db.getSiblingDB("admin").auth("machine-0", "{password or self.password}")')
        lines += statements
        script = (tmp or self.root) / f"cmd-{time.monotonic_ns()}.js"
        script.write_text("\n".join(lines) + "\n")
        script.chmod(0o600)
        try:
            return self.run(
                "mongo", ["--quiet", "--host", "127.0.0.1", "--port", str(port), *self.tls(), str(script)]
            )
        finally:
            script.unlink()


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def _grant_oploger(env: Env, port: int, tmp: Path) -> None:
    """Give machine-0 Juju 2.x's `oploger` role (anyAction on anyResource: state/backups/db.go
    mongoRestorer32.ensureOplogPermissions), as a restore must before `--oplogReplay` or before
    restoring admin.system.*: the stand-in checks privileges as mongod does (Juju's four roles alone
    may not applyOps on 3.2, nor drop admin.system.version)."""
    r = env.shell(port, grant_statements(OPLOGER), tmp=tmp)
    assert [d.get("ok") for d in _json_lines(r.stdout)] == [1, 1], r.stdout + r.stderr


@pytest.fixture(scope="module", params=["juju-2.9", "juju-2.8"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    _host_python_ok()
    profile = request.param
    root = tmp_path_factory.mktemp(f"standins-{profile}")
    provision.install_mongo_tools(root, profile, lib_ref=str(root / provision.LIB_DIR.lstrip("/")))
    hosts = [provision.HostSpec("ctl0", "127.0.0.1", "controller", "0", profile)]
    workloads = [
        provision.HostSpec(f"m{i}", f"10.201.0.{240 + i}", "workload", str(1 + i), profile) for i in (0, 1)
    ]
    cluster = provision.new_cluster(profile, hosts, workloads=workloads)
    (root / "server.pem").write_text(cluster.controller_cert + cluster.controller_key)
    (root / "server.pem").chmod(0o600)
    (root / "shared-secret").write_text(cluster.shared_secret)
    (root / "shared-secret").chmod(0o600)
    return Env(root, profile, cluster)


class Mongods:
    """Starts stand-in mongods (by pid) and stops them at teardown."""

    def __init__(self, env: Env, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def seeded_dbpath(self, name: str, members: list[int], self_port: int) -> Path:
        """Return a dbpath seeded like a controller's, whose replica set has members on these ports."""
        dbpath = self.tmp / name
        provision.build_seed(self.env.cluster, dbpath)
        store = storage.Storage(str(dbpath))
        cfg = store.read("local", "system.replset")[0]
        cfg["members"] = [
            {
                "_id": i + 1,
                "host": f"127.0.0.1:{p}",
                "priority": 1.0,
                "votes": 1,
                "tags": {"juju-machine-id": str(i)},
            }
            for i, p in enumerate(members)
        ]
        store.write("local", "system.replset", [cfg])
        return dbpath

    def start(
        self, dbpath: Path, port: int, auth: bool = True, extra: list[str] | None = None, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        args = [
            "--dbpath",
            str(dbpath),
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--replSet",
            "juju",
            "--keyFile",
            str(self.env.root / "shared-secret"),
            *(["--auth"] if auth else []),
        ]
        pem = str(self.env.root / "server.pem")
        if SERIES[self.env.profile] == "4.4":
            args += ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", pem]
        else:
            args += ["--sslMode", "requireSSL", "--sslPEMKeyFile", pem, "--sslPEMKeyPassword=ignored"]
        proc = subprocess.Popen(
            [self.env.tool("mongod"), *args, *(extra or [])], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.procs.append(proc)
        if wait:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AssertionError(f"mongod exited {proc.returncode}: {proc.stdout.read().decode()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise AssertionError("mongod did not listen")
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)
            if p.stdout:
                p.stdout.close()


@pytest.fixture
def mongods(env: Env, tmp_path: Path) -> Iterator[Mongods]:
    m = Mongods(env, tmp_path)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def server(mongods: Mongods) -> tuple[int, Path]:
    """A running seeded single-member juju-db: (port, dbpath)."""
    port = _free_port()
    dbpath = mongods.seeded_dbpath("db", [port], port)
    mongods.start(dbpath, port)
    return port, dbpath


def _dump_docs(dump: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted(dump.glob("*/*.bson")):
        out[f"{f.parent.name}.{f.name[:-5]}"] = bson.decode_all(f.read_bytes())
    return out


# --------------------------------------------------------------------------- option contract


@pytest.mark.parametrize("tool", ["mongodump", "mongorestore"])
def test_unknown_option_fails_like_the_real_tool(env: Env, tool: str) -> None:
    r = env.run(tool, ["--host", "127.0.0.1", "--frobnicate"])
    assert r.returncode == 3
    assert 'error parsing command line options: unknown option "frobnicate"' in r.stderr
    assert f"try '{tool} --help' for more information" in r.stderr


def test_tls_options_only_on_4_4_tools(env: Env) -> None:
    r = env.run(
        "mongodump",
        [
            "--host",
            "127.0.0.1",
            "--port",
            str(_free_port()),
            "--tls",
            "--tlsInsecure",
            "--out",
            str(env.root / "never"),
        ],
    )
    # 3.2 tools have no --tls*; 100.x tools only --tlsInsecure of them (the rest is --ssl*)
    assert r.returncode == 3
    assert 'unknown option "tls"' in r.stderr
    r = env.run(
        "mongodump",
        ["--host", "127.0.0.1", "--port", str(_free_port()), "--ssl", "--out", str(env.root / "never")],
    )
    assert r.returncode == 1  # accepted: fails later, because nothing listens there
    assert "no reachable servers" in r.stderr


def test_options_the_real_tools_lack_are_flagged(env: Env) -> None:
    port = _free_port()
    r = env.run(
        "mongodump",
        [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--nsExclude",
            "logs.*",
            "--out",
            str(env.root / "never"),
        ],
    )
    assert r.returncode == 3 and 'unknown option "nsExclude"' in r.stderr  # as the real mongodump
    if SERIES[env.profile] == "4.4":
        r = env.run("mongorestore", ["--host", "127.0.0.1", "--port", str(port), "--tls", str(env.root)])
        assert r.returncode == 3 and 'unknown option "tls"' in r.stderr
        r = env.run(
            "mongorestore",
            ["--host", "127.0.0.1", "--port", str(port), "--ssl", "--tlsInsecure", str(env.root)],
        )
        assert "unknown option" not in r.stderr


def test_server_down_fails_with_no_reachable_servers(env: Env) -> None:
    port = _free_port()
    for tool, extra in (("mongodump", ["--out", str(env.root / "never")]), ("mongorestore", [str(env.root)])):
        r = env.run(tool, [*env.conn(port), *extra], stdin=env.password + "\n")
        assert r.returncode == 1, r.stderr
        assert "Failed:" in r.stderr and "no reachable servers" in r.stderr
    r = env.shell(port, ['print(JSON.stringify(db.adminCommand({"ping": 1})))'])
    assert r.returncode == 1
    assert "couldn't connect to server" in r.stdout
    assert not (env.root / "never").exists()


def test_addresses_outside_the_lab_are_never_dialled(env: Env) -> None:
    r = env.run(
        "mongodump",
        ["--host", "10.77.116.68", "--port", "37017", *env.tls(), "--out", str(env.root / "never")],
    )
    assert r.returncode == 1
    assert "no reachable servers" in r.stderr
    if SERIES[env.profile] == "4.4":
        assert "not dialled" in r.stderr


def test_wrong_password_fails(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    r = env.run("mongodump", [*env.conn(port), "--out", str(tmp_path / "d")], stdin="not-the-password\n")
    assert r.returncode == 1
    assert "Failed:" in r.stderr and "Authentication failed." in r.stderr
    assert not (tmp_path / "d").exists()
    r = env.shell(
        port,
        ['print(JSON.stringify(db.getSiblingDB("juju").runCommand({"find": "machines"})))'],
        password="wrong",
        tmp=tmp_path,
    )
    assert "Error: Authentication failed." in r.stdout
    reply = _json_lines(r.stdout)[0]
    assert reply["ok"] == 0 and reply["codeName"] == "Unauthorized"


def test_password_is_read_from_stdin_not_argv(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    r = env.run(
        "mongodump",
        [*env.conn(port), "--db", "juju", "--out", str(tmp_path / "d")],
        stdin=env.password + "\n",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d/juju/machines.bson").exists()
    assert env.password not in r.stderr + r.stdout


def test_tools_config_file_password_only_on_4_4(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    cfg = tmp_path / "tools.yaml"
    cfg.write_text(f'password: "{env.password}"\n')
    cfg.chmod(0o600)
    r = env.run(
        "mongodump", [*env.conn(port), "--config", str(cfg), "--db", "juju", "--out", str(tmp_path / "d")]
    )
    if SERIES[env.profile] == "3.2":
        assert r.returncode == 3 and 'unknown option "config"' in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "d/juju/machines.bson").exists()


def test_mongod_fails_when_its_logpath_cannot_be_opened(env: Env, mongods: Mongods, tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    proc = mongods.start(
        tmp_path / "db", _free_port(), extra=["--logpath", str(tmp_path / "nope/mongodb.log")], wait=False
    )
    assert proc.wait(20) == 1
    assert b"Failed to open" in (proc.stdout.read() if proc.stdout else b"")


def test_plain_connection_to_tls_server_fails(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    args = [*login_args(port), "--out", str(tmp_path / "d")]
    r = env.run("mongodump", args, stdin=env.password + "\n")
    assert r.returncode == 1
    assert "no reachable servers" in r.stderr


# --------------------------------------------------------------------------- dump / restore


def test_dump_layout_and_real_bson(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    out = tmp_path / "dump"
    r = env.run("mongodump", [*env.conn(port), "--out", str(out), "--oplog"], stdin=env.password + "\n")
    assert r.returncode == 0, r.stderr
    assert "done dumping juju.machines (3 documents)" in r.stderr
    assert (out / "oplog.bson").exists()
    docs = _dump_docs(out)
    machines = {d["_id"]: d for d in docs["juju.machines"]}
    m0 = machines[f"{env.cluster.model_uuid}:0"]
    assert m0["jobs"] == [2, 1] and m0["addresses"][0]["value"] == "127.0.0.1"
    settings = {d["_id"]: d for d in docs["juju.settings"]}
    config = settings[f"{env.cluster.model_uuid}:e"]["settings"]
    assert config["provisioner-harvest-mode"] == "destroyed" and "provisioner-safe-mode" not in config
    assert "hasvote" not in m0 and "wantsvote" not in m0  # 2.7+: the votes are in controllerNodes
    node = {d["_id"]: d for d in docs["juju.controllerNodes"]}["0"]
    assert node["has-vote"] is True and node["agent-version"]["version"].endswith("-amd64")
    seeded = {"juju.ip.addresses", "juju.linklayerdevices", "juju.sshhostkeys", "juju.externalControllers"}
    assert seeded <= set(docs)
    meta = json.loads((out / "juju/machines.metadata.json").read_text())
    assert meta["indexes"][0]["name"] == "_id_"
    assert "admin.system.users" in docs and "local.oplog.rs" not in docs


def test_dump_drop_restore_round_trip(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, dbpath = server
    first, second = tmp_path / "d1", tmp_path / "d2"
    r = env.run("mongodump", [*env.conn(port), "--out", str(first), "--oplog"], stdin=env.password + "\n")
    assert r.returncode == 0, r.stderr
    r = env.shell(
        port, ['print(JSON.stringify(db.getSiblingDB("juju").runCommand({"dropDatabase": 1})))'], tmp=tmp_path
    )
    assert _json_lines(r.stdout)[0]["ok"] == 1
    assert not storage.Storage(str(dbpath)).collections("juju")
    r = env.run(
        "mongorestore",
        [
            *env.conn(port),
            "--drop",
            "--oplogReplay",
            "--batchSize",
            "10",
            "--writeConcern",
            "majority",
            "--stopOnError",
            "--maintainInsertionOrder",
            *env.ns_exclude(first, "admin"),
            str(first),
        ],
        stdin=env.password + "\n",
    )
    assert r.returncode == 0, r.stderr
    r = env.run("mongodump", [*env.conn(port), "--out", str(second)], stdin=env.password + "\n")
    assert r.returncode == 0, r.stderr
    def no_admin(docs: dict[str, list[dict]]) -> dict[str, list[dict]]:
        return {k: v for k, v in docs.items() if not k.startswith("admin.")}

    assert no_admin(_dump_docs(second)) == no_admin(_dump_docs(first))


def test_gzip_dump_and_ns_exclude_restore(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, dbpath = server
    out = tmp_path / "gz"
    r = env.run(
        "mongodump", [*env.conn(port), "--out", str(out), "--gzip", "--oplog"], stdin=env.password + "\n"
    )
    assert r.returncode == 0, r.stderr
    assert (out / "juju/machines.bson.gz").exists() and (out / "oplog.bson.gz").exists()
    store = storage.Storage(str(dbpath))
    for coll in store.collections("logs"):
        store.drop("logs", coll)
    store.drop("juju", "machines")
    r = env.run(
        "mongorestore",
        [
            *env.conn(port),
            "--drop",
            "--gzip",
            *env.ns_exclude(out, "logs", "admin"),
            "--oplogReplay",
            str(out),
        ],
        stdin=env.password + "\n",
    )
    assert r.returncode == 0, r.stderr
    assert len(store.read("juju", "machines")) == 3
    assert store.collections("logs") == []


def test_oplog_replay_with_an_exclude_is_refused_like_mongo_tools(env: Env, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    args = ["--host", "127.0.0.1", "--oplogReplay", "--nsExclude", "logs.*", str(tmp_path / "d")]
    r = env.run("mongorestore", args)
    assert r.returncode == 3
    if SERIES[env.profile] == "4.4":  # mongo-tools mongorestore.go ParseAndValidateOptions
        assert "cannot use --oplogReplay with excludes specified" in r.stderr
    else:  # r3.x tools have no --nsExclude at all
        assert "unknown option" in r.stderr


def test_restores_a_real_juju_2_8_dump(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    fixture = VALID_28
    with tarfile.open(fixture) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith("juju-backup/dump/") and (m.isfile() or m.isdir())
        ]
        data_filter = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python 3.11.4+
        tar.extractall(tmp_path, members=members, **data_filter)  # type: ignore[arg-type]
    dump = tmp_path / "juju-backup/dump"
    port, dbpath = server
    r = env.run(
        "mongorestore", [*env.conn(port), "--drop", "--stopOnError", str(dump)], stdin=env.password + "\n"
    )
    assert r.returncode == 0, r.stderr
    store = storage.Storage(str(dbpath))
    for name in ("models", "machines", "clouds"):
        assert store.read("juju", name) == bson.decode_all((dump / f"juju/{name}.bson").read_bytes())


def test_oplog_replay_applies_inserts_updates_deletes(
    env: Env, server: tuple[int, Path], tmp_path: Path
) -> None:
    port, dbpath = server
    out = tmp_path / "d"
    (out / "juju").mkdir(parents=True)
    (out / "juju/things.bson").write_bytes(
        b"".join(bson.encode(d) for d in [{"_id": 1, "v": "a"}, {"_id": 2, "v": "b"}])
    )
    ts = bson.Timestamp(int(time.time()), 1)
    ops = [
        {"ts": ts, "op": "i", "ns": "juju.things", "o": {"_id": 3, "v": "c"}},
        {"ts": ts, "op": "u", "ns": "juju.things", "o2": {"_id": 1}, "o": {"$set": {"v": "A"}}},
        {"ts": ts, "op": "d", "ns": "juju.things", "o": {"_id": 2}},
        {"ts": ts, "op": "n", "ns": "", "o": {"msg": "noop"}},
    ]
    (out / "oplog.bson").write_bytes(b"".join(bson.encode(d) for d in ops))
    _grant_oploger(env, port, tmp_path)
    r = env.run(
        "mongorestore", [*env.conn(port), "--drop", "--oplogReplay", str(out)], stdin=env.password + "\n"
    )
    assert r.returncode == 0, r.stderr
    things = {d["_id"]: d["v"] for d in storage.Storage(str(dbpath)).read("juju", "things")}
    assert things == {1: "A", 3: "c"}


def test_dump_oplog_captures_writes_made_during_the_dump(env: Env, mongods: Mongods, tmp_path: Path) -> None:
    port = _free_port()
    env.cluster.db_size = 150 << 20  # a big `logs` db, dumped last: writes to juju land in the oplog
    try:
        dbpath = mongods.seeded_dbpath("db", [port], port)
    finally:
        env.cluster.db_size = 0
    mongods.start(dbpath, port)
    out = tmp_path / "d"
    dump = subprocess.Popen(
        [env.tool("mongodump"), *env.conn(port), "--out", str(out), "--oplog"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dump.stdin and dump.stderr
    dump.stdin.write(env.password + "\n")
    dump.stdin.close()
    for line in dump.stderr:
        if "writing logs." in line:
            break
    r = env.shell(
        port,
        [
            'print(JSON.stringify(db.getSiblingDB("juju").runCommand({"insert": "during", '
            '"documents": [{"_id": "late"}]})))'
        ],
        tmp=tmp_path,
    )
    assert _json_lines(r.stdout)[0]["n"] == 1
    rest = dump.stderr.read()
    assert dump.wait(120) == 0, rest
    assert "done dumping logs." in rest
    assert not (out / "juju/during.bson").exists()
    oplog = bson.decode_all((out / "oplog.bson").read_bytes())
    assert any(e["op"] == "i" and e["ns"] == "juju.during" and e["o"] == {"_id": "late"} for e in oplog)
    # replaying it reproduces the write on a fresh server
    port2 = _free_port()
    fresh = mongods.seeded_dbpath("db2", [port2], port2)
    mongods.start(fresh, port2)
    _grant_oploger(env, port2, tmp_path)
    # admin left out as well: its system.users would replace the fresh server's, the grant included
    r = env.run(
        "mongorestore",
        [*env.conn(port2), "--drop", "--oplogReplay", *env.ns_exclude(out, "logs", "admin"), str(out)],
        stdin=env.password + "\n",
    )
    assert r.returncode == 0, r.stderr
    assert storage.Storage(str(fresh)).read("juju", "during") == [{"_id": "late"}]


def test_oplog_needs_a_replica_set_member(env: Env, mongods: Mongods, tmp_path: Path) -> None:
    port = _free_port()
    dbpath = mongods.seeded_dbpath("db", [_free_port()], port)  # config does not name this node
    mongods.start(dbpath, port)
    r = env.run(
        "mongodump", [*env.conn(port), "--out", str(tmp_path / "d"), "--oplog"], stdin=env.password + "\n"
    )
    assert r.returncode == 1
    assert "oplog" in r.stderr


def test_restore_without_drop_reports_duplicates(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    out = tmp_path / "d"
    r = env.run("mongodump", [*env.conn(port), "--db", "juju", "--out", str(out)], stdin=env.password + "\n")
    assert r.returncode == 0, r.stderr
    r = env.run("mongorestore", [*env.conn(port), "--stopOnError", str(out)], stdin=env.password + "\n")
    assert r.returncode == 1
    assert "duplicate key" in r.stderr


# --------------------------------------------------------------------------- the shell


def test_shell_commands(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, dbpath = server
    mu = env.cluster.model_uuid
    r = env.shell(
        port,
        [
            'print(JSON.stringify(db.adminCommand({"ping": 1})))',
            'print(JSON.stringify(db.adminCommand({"listDatabases": 1})))',
            'print(JSON.stringify(db.getSiblingDB("juju").runCommand({"dbStats": 1})))',
            f'print(JSON.stringify(db.getSiblingDB("juju").runCommand({{"find": "machines", '
            f'"filter": {{"_id": "{mu}:0"}}}})))',
            f'print(JSON.stringify(db.getSiblingDB("juju").runCommand({{"update": "machines", "updates": '
            f'[{{"q": {{"_id": "{mu}:0"}}, "u": {{"$set": {{"addresses.0.value": "10.201.0.99"}}}}}}]}})))',
            'print(JSON.stringify(db.getSiblingDB("juju").runCommand({"insert": "extra", '
            '"documents": [{"_id": 1}]})))',
            'print(JSON.stringify(db.getSiblingDB("juju").runCommand({"delete": "extra", "deletes": '
            '[{"q": {"_id": 1}, "limit": 1}]})))',
            'print(JSON.stringify(db.adminCommand({"replSetGetConfig": 1})))',
        ],
        tmp=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    ping, dbs, stats, found, upd, ins, dele, cfg = _json_lines(r.stdout)
    assert ping == {"ok": 1}
    assert {"juju", "logs", "admin"} <= {d["name"] for d in dbs["databases"]}
    assert stats["dataSize"] > 0 and stats["storageSize"] > 0
    assert found["cursor"]["firstBatch"][0]["machineid"] == "0"
    assert (upd["n"], upd["nModified"], ins["n"], dele["n"]) == (1, 1, 1, 1)
    assert cfg["config"]["members"][0]["tags"] == {"juju-machine-id": "0"}
    machines = {d["_id"]: d for d in storage.Storage(str(dbpath)).read("juju", "machines")}
    assert machines[f"{mu}:0"]["addresses"][0]["value"] == "10.201.0.99"


def test_shell_rejects_anything_else(env: Env, server: tuple[int, Path], tmp_path: Path) -> None:
    port, _ = server
    r = env.shell(port, ["db.machines.find()"], tmp=tmp_path)
    assert r.returncode != 0
    assert "failed to load" in r.stderr
    r = env.run(
        "mongo", ["--quiet", "--host", "127.0.0.1", "--port", str(port), *env.tls(), "--eval", "rs.status()"]
    )
    assert r.returncode != 0
    script = tmp_path / "no-js-suffix"
    script.write_text('print(JSON.stringify(db.adminCommand({"ping": 1})))\n')
    r = env.run("mongo", ["--quiet", "--host", "127.0.0.1", "--port", str(port), *env.tls(), str(script)])
    assert r.returncode != 0 and '"ok"' not in r.stdout  # not a script: the real shell takes it as the db
    r = env.run("mongo", ["--quiet", "--bogus"])
    assert r.returncode == 2 and "unrecognised option" in r.stderr


def test_shell_eval_runs_the_same_statements(env: Env, server: tuple[int, Path]) -> None:
    port, _ = server
    code = (
        f'db.getSiblingDB("admin").auth("machine-0", "{env.password}"); '
        'print(JSON.stringify(db.adminCommand({"replSetGetStatus": 1})))'
    )
    r = env.run("mongo", ["--quiet", "--host", "127.0.0.1", "--port", str(port), *env.tls(), "--eval", code])
    assert r.returncode == 0, r.stderr
    status = _json_lines(r.stdout)[0]
    assert status["members"][0]["stateStr"] == "PRIMARY" and status["members"][0]["health"] == 1


# --------------------------------------------------------------------------- mongod itself


def test_mongod_lock_file(env: Env, mongods: Mongods) -> None:
    port = _free_port()
    dbpath = mongods.seeded_dbpath("db", [port], port)
    proc = mongods.start(dbpath, port)
    assert (dbpath / "mongod.lock").read_text().strip() == str(proc.pid)
    second = mongods.start(dbpath, _free_port(), wait=False)
    assert second.wait(20) == 100
    assert b"Unable to lock the lock file" in (second.stdout.read() if second.stdout else b"")
    mongods.stop(proc)
    assert proc.returncode == 0
    assert (dbpath / "mongod.lock").read_text() == ""


def test_mongod_rejects_unknown_and_foreign_options(env: Env, mongods: Mongods, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = mongods.start(tmp_path / "empty", _free_port(), extra=["--frobnicate"], wait=False)
    assert proc.wait(20) == 2
    if SERIES[env.profile] == "3.2":
        proc = mongods.start(tmp_path / "empty", _free_port(), extra=["--tlsMode", "requireTLS"], wait=False)
        assert proc.wait(20) == 2


def test_replset_status_marks_unreachable_member_unhealthy(env: Env, mongods: Mongods) -> None:
    p1, p2, p3 = _free_port(), _free_port(), _free_port()
    for name, port in (("a", p1), ("b", p2)):
        mongods.start(mongods.seeded_dbpath(name, [p1, p2, p3], port), port)
    r = env.shell(p1, ['print(JSON.stringify(db.adminCommand({"replSetGetStatus": 1})))'])
    status = _json_lines(r.stdout)[0]
    by_name = {m["name"]: m for m in status["members"]}
    assert by_name[f"127.0.0.1:{p1}"]["health"] == 1 and by_name[f"127.0.0.1:{p1}"].get("self")
    assert by_name[f"127.0.0.1:{p2}"]["health"] == 1
    assert by_name[f"127.0.0.1:{p3}"]["health"] == 0
    assert by_name[f"127.0.0.1:{p3}"]["stateStr"] == "(not reachable/healthy)"
    assert {by_name[f"127.0.0.1:{p}"]["stateStr"] for p in (p1, p2)} == {"PRIMARY", "SECONDARY"}


def test_localhost_exception(env: Env, mongods: Mongods, tmp_path: Path) -> None:
    port = _free_port()
    dbpath = tmp_path / "fresh"
    dbpath.mkdir()
    mongods.start(dbpath, port)
    member = json.dumps(
        {
            "_id": "juju",
            "members": [{"_id": 1, "host": f"127.0.0.1:{port}", "tags": {"juju-machine-id": "0"}}],
        }
    )
    create_user = ('print(JSON.stringify(db.adminCommand({"createUser": "machine-0", "pwd": "s3cret", '
                   '"roles": [{"role": "root", "db": "admin"}]})))')
    r = env.shell(
        port,
        [
            'print(JSON.stringify(db.getSiblingDB("juju").runCommand({"find": "x"})))',
            f'print(JSON.stringify(db.adminCommand({{"replSetInitiate": {member}}})))',
            create_user,
        ],
        auth=False,
        tmp=tmp_path,
    )
    find, initiate, too_early = _json_lines(r.stdout)
    assert find["codeName"] == "Unauthorized"
    assert initiate["ok"] == 1
    # the set elects its primary after the initiate's reply: a write sent at once is refused
    assert too_early["ok"] == 0 and too_early["codeName"] == "NotWritablePrimary"
    for _ in range(100):
        create = _json_lines(env.shell(port, [create_user], auth=False, tmp=tmp_path).stdout)[0]
        if create["ok"] == 1:
            break
        assert create["codeName"] == "NotWritablePrimary"
    assert create["ok"] == 1
    r = env.shell(
        port,
        ['print(JSON.stringify(db.adminCommand({"createUser": "intruder", "pwd": "x", "roles": []})))'],
        auth=False,
        tmp=tmp_path,
    )
    assert _json_lines(r.stdout)[0]["codeName"] == "Unauthorized"
    r = env.shell(
        port,
        ['print(JSON.stringify(db.getSiblingDB("juju").runCommand({"find": "x"})))'],
        password="s3cret",
        tmp=tmp_path,
    )
    assert _json_lines(r.stdout)[0]["ok"] == 1
    users = storage.Storage(str(dbpath)).read("admin", "system.users")
    assert users[0]["user"] == "machine-0" and "s3cret" not in repr(users)


def test_read_db_reads_a_provisioned_controller(tmp_path: Path) -> None:
    hosts = [
        provision.HostSpec(f"ctl{i}", f"10.201.0.{11 + i}", "controller", str(i), "juju-2.9")
        for i in range(3)
    ]
    cluster = provision.new_cluster("juju-2.9", hosts, db_size=200_000)
    for h in hosts:
        provision.provision_host(tmp_path / h.name, h, cluster)
    data = [provision.read_db(tmp_path / h.name, "juju-2.9") for h in hosts]
    assert data[0] == data[1] == data[2]
    juju = data[0]["juju"]
    assert {m["_id"] for m in juju["machines"]} >= {f"{cluster.model_uuid}:{i}" for i in range(3)}
    assert juju["controllers"][0]["controller-ids"] == ["0", "1", "2"]
    members = data[0]["local"]["system.replset"][0]["members"]
    assert [(m["host"], m["tags"]["juju-machine-id"]) for m in members] == [
        (f"10.201.0.{11 + i}:37017", str(i)) for i in range(3)
    ]
    assert sum(len(bson.encode(d)) for docs in data[0]["logs"].values() for d in docs) >= 200_000
    assert len(set(cluster.passwords.values())) == 3
    conf = (tmp_path / "ctl1/var/lib/juju/agents/machine-1/agent.conf").read_text()
    assert conf.startswith("# format 2.0\n") and f"statepassword: {cluster.passwords['1']}" in conf
    assert "- 10.201.0.12:17070" in conf
    assert oct((tmp_path / "ctl1/var/lib/juju/agents/machine-1/agent.conf").stat().st_mode & 0o777) == "0o600"
    assert (
        os.readlink(tmp_path / "ctl1/var/lib/juju/tools/machine-1")
        == "/var/lib/juju/tools/2.9.42-focal-amd64"
    )
