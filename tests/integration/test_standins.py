"""The stand-ins on booted lab hosts: juju-db and jujud run as on a real controller, jujud refuses
to run when addresses do not point at its host, replSetGetStatus sees a powered-off HA member."""

from __future__ import annotations

import json
import shlex
import socket
import ssl
import time
from typing import Any

import pytest

from tests.lab import provision
from tests.lab.lab import LabHost
from tests.lab.standins import jujud

pytestmark = pytest.mark.lab

CA, PEM = "/var/snap/juju-db/common/ca.crt", "/var/snap/juju-db/common/server.pem"


def shell_tls(spec: provision.Profile) -> str:
    """The mongo shell's TLS flags for this juju-db: --tls* from 4.2, a client certificate on 4.4.30."""
    if spec.generation.client_cert_required:
        return f"--tls --tlsCAFile {CA} --tlsCertificateKeyFile {PEM}"
    if spec.generation.tls_aliases:
        return "--tls --tlsAllowInvalidCertificates"
    return "--ssl --sslAllowInvalidCertificates"


def tools_tls(spec: provision.Profile) -> str:
    """mongodump's TLS flags: --tlsInsecure only in 100.x, the CA and client certificate on 4.4.30."""
    if spec.generation.client_cert_required:
        return f"--ssl --sslCAFile {CA} --sslPEMKeyFile {PEM} --sslPEMKeyPassword ignore"
    if spec.generation.tools_tls_insecure:
        return "--ssl --tlsInsecure"
    return "--ssl --sslAllowInvalidCertificates"


def _spec(host: LabHost) -> provision.Profile:
    return provision.PROFILES[host.profile]


def scratch(spec: provision.Profile) -> str:
    """Return where a test puts files for the profile's mongo tools: SNAP_COMMON for the confined snap
    (standins/confinement.py), else /tmp."""
    return provision.SNAP_COMMON if spec.snap else "/tmp"


def _agent_conf(host: LabHost) -> str:
    return (host.root / f"var/lib/juju/agents/machine-{host.machine_id}/agent.conf").read_text()


def mongo_commands(host: LabHost, commands: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run database commands through the host's mongo shell as jujubackup does (0600 JS file, password
    read from agent.conf on the host, never in argv); return the JSON replies."""
    spec, mid = _spec(host), host.machine_id
    body = "\n".join(
        f"print(JSON.stringify(db.getSiblingDB({json.dumps(db)}).runCommand({json.dumps(cmd)})))"
        for db, cmd in commands
    )
    script = (
        f"set -eu; umask 077; f=$(mktemp -p {scratch(spec)} --suffix=.js); trap 'rm -f \"$f\"' EXIT\n"
        f"pw=$(sed -n 's/^statepassword: //p' /var/lib/juju/agents/machine-{mid}/agent.conf)\n"
        f'printf \'db.getSiblingDB("admin").auth("machine-{mid}", "%s")\\n\' "$pw" > "$f"\n'
        f"cat >> \"$f\" <<'EOF'\n{body}\nEOF\n"
        f'{spec.tools["mongo"]} --quiet --host 127.0.0.1 --port 37017 {shell_tls(spec)} "$f"\n'
    )
    for _ in range(30):  # jujud restarts juju-db at each start (ensure_mongo_snap): it may not listen yet
        r = host.ssh(f"bash -c {shlex.quote(script)}")
        if r.returncode == 0 or "refused" not in (r.stdout + r.stderr).lower():
            break
        time.sleep(1)
    assert r.returncode == 0, r.stdout + r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def wait_for(host: LabHost, cmd: str, predicate: Any, what: str, timeout: float = 90) -> str:
    """Poll `cmd` on host until predicate(stdout) holds; return that stdout. Fail with `what`."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = host.ssh(cmd).stdout
        if predicate(out):
            return out
        time.sleep(0.5)
    pytest.fail(f"{host.name}: {what}; last output:\n{out}")


def wait_agent_running(host: LabHost) -> None:
    mid = host.machine_id
    wait_for(
        host,
        f"cat /var/log/juju/machine-{mid}.log",
        lambda o: "peergrouper started" in o,
        "jujud did not start",
    )
    wait_for(
        host,
        f"systemctl is-active {_spec(host).db_service} jujud-machine-{mid}",
        lambda o: o.split() == ["active", "active"],
        "juju-db and jujud are not both active",
    )


@pytest.mark.parametrize("profile", list(provision.PROFILES))
def test_fresh_controller_runs_juju_db_and_jujud(lab_factory: Any, profile: str) -> None:
    lab = lab_factory(controllers=1, spares=1, profile=profile)
    ctl, spare = lab.host("ctl0"), lab.host("spare0")
    spec = provision.PROFILES[profile]
    wait_agent_running(ctl)
    # the API port serves TLS with the controller certificate (signed by agent.conf's CA)
    conf = _agent_conf(ctl)
    ca = conf.split("cacert: |\n", 1)[1].split("statepassword:", 1)[0].replace("\n  ", "\n").strip() + "\n"
    ca = "\n".join(line.strip() for line in ca.splitlines()) + "\n"
    ctx = ssl.create_default_context(cadata=ca)
    with (
        socket.create_connection((ctl.ip, 17070), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="juju-apiserver") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: juju-apiserver\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200")
    # online dump with the password on stdin; fails once juju-db is stopped
    dump = (
        f"sed -n 's/^statepassword: //p' /var/lib/juju/agents/machine-0/agent.conf | "
        f"{spec.tools['mongodump']} --host 127.0.0.1 --port 37017 --username machine-0 "
        f"--authenticationDatabase admin {tools_tls(spec)} --oplog --out {scratch(spec)}/dump"
    )
    r = ctl.ssh(dump)
    assert r.returncode == 0, r.stderr
    out = f"{scratch(spec)}/dump"
    assert ctl.ssh(f"test -s {out}/juju/machines.bson && test -e {out}/oplog.bson").returncode == 0
    # each version's flag set bites: --tlsInsecure does not exist before mongo-tools 100.x (r4.0.9 here),
    # and juju-db 4.4.30 refuses a client without a certificate chaining to ca.crt
    gen = spec.generation
    insecure = dump.replace(tools_tls(spec), "--ssl --tlsInsecure").replace(out, f"{out}1")
    r = ctl.ssh(insecure)
    if not gen.tools_tls_insecure:
        assert r.returncode == 3
        assert 'error parsing command line options: unknown option "tlsInsecure"' in r.stderr
    elif gen.client_cert_required:
        assert r.returncode == 1 and "no reachable servers" in r.stderr, r.stderr
        assert ctl.ssh(f"test ! -e {out}1/juju").returncode == 0
    else:
        assert r.returncode == 0, r.stderr
    # agent.conf and tools dir of the Juju generation: 3.x has no mongoversion and <version>-ubuntu-<arch>
    conf = _agent_conf(ctl)
    assert ("mongoversion:" in conf) == (not spec.base)
    tools = ctl.ssh("readlink /var/lib/juju/tools/machine-0").stdout.strip()
    assert tools.endswith(f"/{spec.juju_version}-{'ubuntu' if spec.base else spec.series}-amd64")
    assert ctl.ssh(f"systemctl stop {spec.db_service}").returncode == 0
    assert ctl.ssh(f"test ! -s {spec.dbpath}/mongod.lock").returncode == 0
    r = ctl.ssh(dump.replace(out, f"{out}2"))
    assert r.returncode == 1 and "no reachable servers" in r.stderr
    # the spare: the profile's mongo tools as a package would install them, no Juju state, no services
    assert spare.ssh(f"test -x {spec.tools['mongodump']} && test -x {spec.tools['mongod']}").returncode == 0
    assert spare.ssh("test ! -e /var/lib/juju/agents").returncode == 0
    units = spare.ssh("systemctl list-unit-files --no-legend | grep -e juju -e mongo || true").stdout
    # a snap juju-db comes with snapd's unit for its daemon, disabled by the snap's install hook
    assert units.split() == (["snap.juju-db.daemon.service", "disabled", "enabled"] if spec.snap else [])


def test_jujud_heals_stale_agent_conf_apiaddresses(lab_factory: Any) -> None:
    """A controller's jujud reaches its API and mongo over localhost (juju/juju agent/agent.go), so a
    stale `apiaddresses` does not stop it: the api-address-updater rewrites it (mode kept)."""
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    wait_agent_running(ctl)
    conf_path = ctl.root / "var/lib/juju/agents/machine-0/agent.conf"
    conf_path.write_text(conf_path.read_text().replace(f"- {ctl.ip}:17070", "- 10.201.0.250:17070"))
    assert ctl.ssh("systemctl restart jujud-machine-0").returncode == 0
    wait_for(
        ctl,
        "cat /var/log/juju/machine-0.log",
        lambda o: f"API addresses updated to [{ctl.ip}]" in o,
        "jujud did not heal agent.conf apiaddresses",
    )
    text = conf_path.read_text()
    assert f"- {ctl.ip}:17070" in text and "10.201.0.250" not in text
    assert conf_path.stat().st_mode & 0o777 == 0o600
    wait_agent_running(ctl)


def test_a_bootstrapped_spare_is_a_3x_controller_of_its_own_whose_api_needs_its_dqlite_node(
    lab_factory: Any,
) -> None:
    """boot0 is what `juju bootstrap` leaves: a controller with its own CA and controller UUID, only
    the controller model, juju-db and jujud running, a dqlite node. Juju 3.x's jujud opens the API
    only with a dqlite node that ran before: on an empty /var/lib/juju/dqlite the dbaccessor waits for
    peers (juju/juju worker/dbaccessor/worker.go) and the API never opens, while the agent runs on."""
    lab = lab_factory(controllers=1, bootstrapped_spares=1, profile="juju-3.6")
    ctl, boot = lab.host("ctl0"), lab.host("boot0")
    wait_agent_running(boot)
    own, theirs = (jujud.parse_agent_conf(_agent_conf(h)) for h in (boot, ctl))
    assert own["controller"] != theirs["controller"] and own["cacert"] != theirs["cacert"]
    models = provision.read_db(boot.root, boot.profile, dbs=["juju"])["juju"]["models"]
    assert [m["name"] for m in models] == ["controller"]
    node = sorted(p.name for p in (boot.root / "var/lib/juju/dqlite").iterdir())
    assert node == ["cluster.yaml", "info.yaml"]

    log = "/var/log/juju/machine-0.log"
    boot.ssh(f"systemctl stop jujud-machine-0 && mv /var/lib/juju/dqlite /root/dqlite-node && : > {log} "
             "&& systemctl start jujud-machine-0", check=True)
    out = wait_for(boot, f"cat {log}", lambda o: "no addresses available for this Dqlite node" in o,
                   "jujud did not wait for dqlite peers")
    assert "listening on" not in out
    assert boot.ssh("stat -c %a /var/lib/juju/dqlite").stdout.strip() == "700"  # EnsureDataDir
    assert boot.ssh("systemctl is-active jujud-machine-0").stdout.strip() == "active"
    assert ":17070 " not in boot.ssh("ss -ltn").stdout

    boot.ssh(f"systemctl stop jujud-machine-0 && rmdir /var/lib/juju/dqlite && mv /root/dqlite-node "
             f"/var/lib/juju/dqlite && : > {log} && systemctl start jujud-machine-0", check=True)
    wait_agent_running(boot)
    assert "host is configured as a Dqlite node (127.0.0.1:17666)" in boot.ssh(f"cat {log}").stdout
    assert ":17070 " in boot.ssh("ss -ltn").stdout


def test_jujud_refuses_when_db_addresses_are_not_this_host(lab_factory: Any) -> None:
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    wait_agent_running(ctl)
    model = provision.read_db(ctl.root, ctl.profile, dbs=["juju"])["juju"]["controllers"][0]["model-uuid"]
    (reply,) = mongo_commands(
        ctl,
        [
            (
                "juju",
                {
                    "update": "machines",
                    "updates": [
                        {"q": {"_id": f"{model}:0"}, "u": {"$set": {"addresses.0.value": "10.201.0.250"}}}
                    ],
                },
            )
        ],
    )
    assert reply["nModified"] == 1
    assert ctl.ssh("systemctl restart jujud-machine-0").returncode == 0
    wait_for(
        ctl,
        "cat /var/log/juju/machine-0.log",
        lambda o: "ERROR juju.worker.peergrouper machine 0 addresses ['10.201.0.250']" in o,
        "jujud did not log the peergrouper refusal",
    )
    wait_for(
        ctl,
        "systemctl is-active jujud-machine-0",
        lambda o: o.strip() == "failed",
        "jujud-machine-0 did not end up failed",
    )


def test_ha_replica_set_sees_a_powered_off_member(lab_factory: Any) -> None:
    lab = lab_factory(controllers=3)
    ctl0, ctl2 = lab.host("ctl0"), lab.host("ctl2")
    for h in lab.controllers:
        wait_agent_running(h)
    data = [provision.read_db(h.root, h.profile, dbs=["juju", "local"]) for h in lab.controllers]
    assert data[0]["juju"]["models"] == data[1]["juju"]["models"] == data[2]["juju"]["models"]
    (cfg,) = mongo_commands(ctl0, [("admin", {"replSetGetConfig": 1})])
    tags = {m["host"]: m["tags"]["juju-machine-id"] for m in cfg["config"]["members"]}
    assert tags == {f"{h.ip}:37017": h.machine_id for h in lab.controllers}

    def status() -> dict[str, dict[str, Any]]:
        (st,) = mongo_commands(ctl0, [("admin", {"replSetGetStatus": 1})])
        return {m["name"]: m for m in st["members"]}

    members = status()
    assert all(m["health"] == 1 for m in members.values())
    assert sorted(m["stateStr"] for m in members.values()) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    ctl2.power_off()
    members = status()
    gone = members[f"{ctl2.ip}:37017"]
    assert gone["health"] == 0 and gone["stateStr"] == "(not reachable/healthy)"
    assert all(m["health"] == 1 for name, m in members.items() if name != f"{ctl2.ip}:37017")


def test_libjuju_lists_a_fresh_controllers_models_and_machines(lab_factory: Any) -> None:
    """python-libjuju, a client no one here wrote, connects by controller name with the juju_data
    `lab up` makes (controllers.yaml, accounts.yaml 0600) and lists models and machines from the
    database; a wrong password and anything but the read-only calls are refused as Juju does."""
    from tests import libjuju
    from tests.lab.standins import api, jujud

    lab = lab_factory(controllers=1, machines=2)
    ctl = lab.host("ctl0")
    wait_agent_running(ctl)
    assert lab.describe()["juju_data"] == str(lab.juju_data)
    assert (lab.juju_data / "accounts.yaml").stat().st_mode & 0o777 == 0o600
    seen = libjuju.sees(lab.juju_data, "--controller", "lab")
    assert seen["server_version"] == "2.9.42" and seen["endpoint"] == f"{ctl.ip}:17070"
    assert seen["models"] == ["controller", "default"]
    assert seen["machines"] == {"controller": ["0", "1"], "default": ["2"]}
    assert seen["applications"] == {"controller": ["ubuntu"], "default": ["ubuntu"]}
    assert seen["units"] == {"controller": ["ubuntu/1"], "default": ["ubuntu/2"]}
    accounts = lab.juju_data / "accounts.yaml"
    password = accounts.read_text().split("password: ", 1)[1].split("\n", 1)[0]
    accounts.write_text(accounts.read_text().replace(password, password + "x"))
    refused = libjuju.probe(lab.juju_data, "--controller", "lab")
    assert refused.returncode == 1
    assert "invalid entity name or password (unauthorized access)" in refused.stderr
    # a write, on a model connection of a logged-in admin, is refused with Juju's error shape
    conf = jujud.parse_agent_conf(_agent_conf(ctl))
    uuid = str(conf["model"]).removeprefix("model-")
    sock = api.dial(f"{ctl.ip}:17070", str(conf["cacert"]), uuid)
    try:
        api.call(sock, 1, "Admin", 3, "Login", {"auth-tag": "user-admin", "credentials": password})
        with pytest.raises(api.LoginError, match="not implemented"):
            api.call(sock, 2, "Application", 13, "Deploy", {})
        with pytest.raises(api.LoginError, match="not implemented"):
            api.call(sock, 3, "ModelManager", 5, "DestroyModels", {})
    finally:
        sock.close()


@pytest.mark.parametrize("profile", ["juju-2.9"])
def test_snap_confinement_rules_bite(lab_factory: Any, profile: str) -> None:
    """The juju-db snap's commands are confined as snapd confines them (standins/confinement.py): a
    private /tmp, only the snap's dirs, and an inherited stdout to a file outside them replaced."""
    lab = lab_factory(controllers=1, profile=profile)
    ctl = lab.host("ctl0")
    wait_agent_running(ctl)  # jujud restarts juju-db as it starts: probe after that
    spec = provision.PROFILES[profile]
    common = provision.SNAP_COMMON
    auth = (
        "pw=$(sed -n 's/^statepassword: //p' /var/lib/juju/agents/machine-0/agent.conf); umask 077; "
        "printf 'db.getSiblingDB(\"admin\").auth(\"machine-0\", \"%s\");\\n"
        "print(JSON.stringify(db.adminCommand({\"ping\": 1})));\\n' \"$pw\" >"
    )
    shell = f"{spec.tools['mongo']} --quiet --host 127.0.0.1 --port 37017 {shell_tls(spec)}"
    # 1. private /tmp: a JS file the host wrote to /tmp is not there for the snap's shell ...
    r = ctl.ssh(f"{auth} /tmp/t.js; {shell} /tmp/t.js")
    assert r.returncode == 253 and "file [/tmp/t.js] doesn't exist" in r.stdout, r.stdout + r.stderr
    # ... the same file under SNAP_COMMON is read
    r = ctl.ssh(f"{auth} {common}/t.js; {shell} {common}/t.js; rm -f {common}/t.js /tmp/t.js")
    assert r.returncode == 0 and '"ok":1' in r.stdout.replace(" ", ""), r.stdout + r.stderr
    # ... and what the snap writes to /tmp lands in snapd's private dir, not in the host's /tmp
    dump = (
        "sed -n 's/^statepassword: //p' /var/lib/juju/agents/machine-0/agent.conf | "
        f"{spec.tools['mongodump']} --host 127.0.0.1 --port 37017 --username machine-0 "
        f"--authenticationDatabase admin {tools_tls(spec)} --out"
    )
    assert ctl.ssh(f"{dump} /tmp/d").returncode == 0
    assert ctl.ssh("test ! -e /tmp/d && test -s /tmp/snap-private-tmp/snap.juju-db/tmp/d/juju/machines.bson"
                   ).returncode == 0
    # 2. path rules: a dump dir outside the snap's dirs is refused as the Go tools refuse it ...
    r = ctl.ssh(f"{dump} /var/lib/jb-dump")
    assert r.returncode == 1 and "permission denied" in r.stderr, r.stderr
    assert ctl.ssh("test ! -e /var/lib/jb-dump/juju").returncode == 0
    # ... and so is a dump to restore from there
    private = "/tmp/snap-private-tmp/snap.juju-db/tmp"
    assert ctl.ssh(f"mkdir -p /var/lib/jb-restore; cp -a {private}/d/. /var/lib/jb-restore/").returncode == 0
    restore = dump.replace(spec.tools["mongodump"], spec.tools["mongorestore"]).replace(" --out", "")
    r = ctl.ssh(f"{restore} --drop /var/lib/jb-restore")
    assert r.returncode == 1 and "permission denied" in r.stderr, r.stderr
    # 3. an inherited stdout to a file the snap may not write is replaced: the output is lost ...
    version = f"{spec.tools['mongodump']} --version"
    assert ctl.ssh(f"{version} >/var/lib/v.txt; wc -c </var/lib/v.txt").stdout.strip() == "0"
    # ... into SNAP_COMMON or through a pipe it arrives
    assert "mongodump version" in ctl.ssh(f"{version} >{common}/v.txt; cat {common}/v.txt").stdout
    assert "mongodump version" in ctl.ssh(f"{version} | cat").stdout
    # juju-db itself (the snap's daemon) runs confined and serves
    assert ctl.ssh(f"systemctl is-active {spec.db_service}").stdout.strip() == "active"


def test_jujud_peergrouper_adds_dead_controllers_as_non_voters_and_fails_without_a_majority(
    lab_factory: Any,
) -> None:
    """Juju's peergrouper (standins/peergrouper.py): a dead controller named only by controller-ids
    and controllerNodes becomes a NON-voting member and loses `has-vote`; once dead controllers vote
    in the replica set, the set has no majority and jujud cannot run."""
    lab = lab_factory(controllers=1)
    ctl = lab.host("ctl0")
    wait_agent_running(ctl)
    model = provision.read_db(ctl.root, ctl.profile, dbs=["juju"])["juju"]["controllers"][0]["model-uuid"]
    dead = "10.201.0.250"
    replies = mongo_commands(ctl, [
        ("juju", {"insert": "machines", "documents": [{
            "_id": f"{model}:7", "machineid": "7", "model-uuid": model, "jobs": [1, 2], "life": 0,
            "addresses": [{"value": dead, "addresstype": "ipv4", "networkscope": "local-cloud"}]}]}),
        ("juju", {"insert": "controllerNodes",
                  "documents": [{"_id": "7", "has-vote": True, "wants-vote": True}]}),
        ("juju", {"update": "controllers", "updates": [{"q": {"_id": "e"},
                                                        "u": {"$set": {"controller-ids": ["0", "7"]}}}]}),
    ])
    assert [r["ok"] for r in replies] == [1, 1, 1], replies
    assert ctl.ssh("systemctl restart jujud-machine-0").returncode == 0
    wait_for(ctl, "cat /var/log/juju/machine-0.log", lambda o: "successfully updated replica set" in o,
             "the peergrouper did not reconfigure the replica set")
    wait_agent_running(ctl)
    cfg, nodes = mongo_commands(ctl, [("admin", {"replSetGetConfig": 1}),
                                      ("juju", {"find": "controllerNodes", "filter": {}})])
    members = {m["tags"]["juju-machine-id"]: m for m in cfg["config"]["members"]}
    assert members["7"]["host"] == f"{dead}:37017" and members["7"]["votes"] == 0
    assert members["0"]["host"] == f"{ctl.ip}:37017" and members["0"].get("votes", 1) == 1
    assert {n["_id"]: n["has-vote"] for n in nodes["cursor"]["firstBatch"]} == {"0": True, "7": False}

    # The dead controller votes (as in a replica set config carried over from the old HA set).
    config = cfg["config"]
    config["members"] = [{k: v for k, v in m.items() if k not in ("votes", "priority")}
                         for m in config["members"]]
    (reply,) = mongo_commands(ctl, [("admin", {"replSetReconfig": config, "force": True})])
    assert reply["ok"] == 1, reply
    assert ctl.ssh("systemctl restart jujud-machine-0").returncode == 0
    wait_for(ctl, "cat /var/log/juju/machine-0.log",
             lambda o: "ERROR juju.worker.peergrouper the replica set has no primary" in o,
             "jujud ran on a replica set without a majority")
    (cfg,) = mongo_commands(ctl, [("admin", {"replSetGetConfig": 1})])
    assert all(m.get("votes", 1) == 1 for m in cfg["config"]["members"])  # nothing voted the dead one out


def test_juju_db_snap_runs_the_config_configpath_names_and_jujud_points_it_at_juju_db_config(
    lab_factory: Any,
) -> None:
    """The juju-db snap's daemon runs `mongod --config $(snapctl get configpath)` (standins/snapd.py:
    juju/juju-db-snap daemon.start); its install hook points configpath at default.config; jujud
    sets it to juju-db.config and restarts juju-db at every start (Juju's mongo.EnsureServer)."""
    lab = lab_factory(controllers=1, spares=1, profile="juju-2.9")
    ctl, spare = lab.host("ctl0"), lab.host("spare0")
    wait_agent_running(ctl)
    common_dir = provision.SNAP_COMMON
    assert ctl.ssh("snap get juju-db configpath").stdout.strip() == f"{common_dir}/juju-db.config"
    assert spare.ssh("snap get juju-db configpath").stdout.strip() == f"{common_dir}/default.config"
    unit = _spec(ctl).db_service
    assert ctl.ssh(f"systemctl cat {unit}").stdout.count("ExecStart=/usr/bin/snap run juju-db.daemon") == 1

    assert ctl.ssh("systemctl stop jujud-machine-0").returncode == 0
    assert ctl.ssh(f"snap set juju-db configpath={common_dir}/gone.config").returncode == 0
    ctl.ssh(f"systemctl restart {unit}")
    wait_for(ctl, f"journalctl -u {unit} --no-pager -n 50",
             lambda o: f"error: file configpath {common_dir}/gone.config does not exist." in o,
             "juju-db did not read its config from configpath")
    assert ":37017 " not in ctl.ssh("ss -ltn").stdout
    # systemd gives up on the failing daemon (its start limit); an operator clears that, then jujud
    # (stopped above: it would restart juju-db into the same failure) starts again
    ctl.ssh(f"systemctl stop {unit}; systemctl reset-failed {unit}")

    assert ctl.ssh("systemctl start jujud-machine-0").returncode == 0
    wait_for(ctl, f"systemctl is-active {unit} jujud-machine-0",
             lambda o: o.split() == ["active", "active"], "jujud did not bring juju-db back")
    assert ctl.ssh("snap get juju-db configpath").stdout.strip() == f"{common_dir}/juju-db.config"
    log = ctl.ssh("cat /var/log/juju/machine-0.log").stdout
    assert "INFO juju.mongo Ensuring mongo server is running" in log
    wait_agent_running(ctl)
