"""Stand-in for `jujud` (the Juju machine agent, 2.9.42 focal / 2.8.10 bionic) as installed in
/var/lib/juju/tools/<version>-<series>-amd64/jujud.  Test code, never shipped.

`jujud machine --data-dir /var/lib/juju --machine-id N [--debug]` reads agents/machine-N/agent.conf
and, like real jujud on a controller, reaches its own mongo and API over LOCALHOST (juju/juju
agent/agent.go: a controller's MongoInfo/APIInfo use localhost:stateport / localhost:apiport), so
stale `apiaddresses` in agent.conf do not stop it. It authenticates to juju-db (127.0.0.1:stateport,
TLS verified against the agent.conf CA, server name juju-mongodb) as machine-N with its
statepassword, and refuses to run - logging a line containing "peergrouper" and the reason to
/var/log/juju/machine-N.log and exiting non-zero - unless:
  * the machines document `<controller-model-uuid>:N` lists one of this host's IPs in `addresses`
    (provider addresses: only a cloud's instancepoller changes them, never the machine itself;
    STRICTER than a cloud controller, true of a manual one) and its `passwordhash` matches the
    agent's apipassword,
  * N is in the controllers document `e` `controller-ids` and has a controllerNodes document,
  * the peergrouper (peergrouper.py, juju/juju worker/peergrouper) can compute the peer group and
    the replica set has a primary after its round: dead old controllers that are voting members
    keep their votes and leave the set without a majority; dead ones only in `controller-ids`
    become non-voting members; `has-vote` follows the members' votes. The round runs again at
    every periodic check.
It then heals what real workers heal on a controller that moved:
  * `machineaddresses` to this host's addresses (the machiner, worker/machiner/machiner.go
    SetMachineAddresses),
  * `apiHostPorts` / `apiHostPortsForAgents` to the controllers' addresses (the peergrouper,
    worker/peergrouper/publish.go SetAPIHostPorts),
  * agent.conf `apiaddresses` to those host ports (the api-address-updater,
    worker/apiaddressupdater/apiaddressupdater.go SetAPIHostPorts).
On the API port it serves, like pkitls.AuthoritySNITLSGetter (juju/juju pki/tls/sni.go), a client
hello WITHOUT a server name (any client dialling an IP) the `controllerip` leaf certificate that the
certupdater makes for the machine's addresses at every start, signed by the controller CA
(worker/certupdater/certupdater.go, LeafRequestForGroup(ControllerIPLeafGroup)...Commit()); a hello
with a server name gets server.pem (the default leaf). It keeps checking the DB.

Juju 3.x (a version 3.* stand-in) opens the API only once its dqlite node under
<data-dir>/dqlite is one that ran before: the apiserver manifold depends on the lease manager, which
blocks on the dbaccessor's GetDB (juju/juju cmd/jujud/agent/machine/manifolds.go, worker/lease/manifold).
The dbaccessor (worker/dbaccessor/worker.go loop, juju/juju @00d5cd6d, juju/worker/v3 era) creates
the dir (0700) if missing (database/node.go EnsureDataDir) and calls it an existing node when the dir
has any entry (IsExistingNode: Readdirnames(1)); an existing node starts from its info.yaml and
cluster.yaml (startExistingDqliteNode). On an empty dir it asks for the API server details and
waits to join the peers they name; with no other controller it logs "no addresses available for
this Dqlite node to join cluster" (joinNodeToCluster) and the API never opens, while the agent runs on.
Only agentbootstrap (`juju bootstrap`: database.BootstrapDqlite) ever makes a first node.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import bson

from . import agent, api, common, peergrouper


def agent_password_hash(password: str) -> str:
    """Return Juju's AgentPasswordHash: base64 of the first 18 bytes of sha512(password)."""
    return base64.b64encode(hashlib.sha512(password.encode()).digest()[:18]).decode()


def parse_agent_conf(text: str) -> dict[str, Any]:
    """Given agent.conf text (the YAML subset Juju writes), return its top-level keys."""
    out: dict[str, Any] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#") or line.startswith(" ") or line.startswith("-"):
            i += 1
            continue
        key, _, rest = line.partition(":")
        rest = rest.strip()
        i += 1
        if rest == "|":
            block = []
            while i < len(lines) and (lines[i].startswith("  ") or not lines[i].strip()):
                block.append(lines[i][2:])
                i += 1
            out[key] = "\n".join(block).rstrip("\n") + "\n"
        elif rest == "":
            items: list[str] = []
            mapping: dict[str, str] = {}
            while i < len(lines) and (lines[i].startswith("- ") or lines[i].startswith("  ")):
                s = lines[i].strip()
                if s.startswith("- "):
                    items.append(_scalar(s[2:]))
                else:
                    k, _, v = s.partition(":")
                    mapping[k.strip()] = _scalar(v.strip())
                i += 1
            out[key] = mapping if mapping else items
        else:
            out[key] = _scalar(rest)
    return out


def _scalar(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def is_local_ip(ip: str) -> bool:
    """Return True if ip is a non-loopback address of this host."""
    if ip.startswith("127.") or ip in ("::1", "localhost"):
        return False
    try:
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


class AgentLog:
    """Writes Juju-style lines to /var/log/juju/machine-N.log."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, level: str, module: str, msg: str) -> None:
        ts = datetime.datetime.now(common.UTC).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path, "a") as f:
            f.write(f"{ts} {level} {module} {msg}\n")


MGO_SYNC_SHORT_DELAY = 0.5
"""Seconds between the agent's attempts to reach a juju-db that is not listening yet (its restart by
ensure_mongo_snap): juju/mgo cluster.go syncServer retries `ismaster` after `syncShortDelay` (500 ms)
and syncServersLoop syncs again after the same delay when it found no master."""


class Refused(Exception):
    """The agent refuses to run."""


def check_state(conf: dict[str, Any], machine_id: str, log: AgentLog, heal: bool = True) -> list[str]:
    """Connect to juju-db as the agent and run the peergrouper checks; raise Refused with the reason."""
    port = int(conf.get("stateport", 37017))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=conf.get("cacert", ""))
    ctx.check_hostname = True
    # the agent presents the controller certificate: juju-db 4.4.30 requires a client certificate
    # (juju/juju#22455); real jujud dials with it since then
    pem = os.path.join(str(conf.get("datadir") or "/var/lib/juju"), "server.pem")
    if os.path.exists(pem):
        ctx.load_cert_chain(pem)
    deadline = time.time() + 60
    last = ""
    sock = None
    while time.time() < deadline:
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=3)
            sock = ctx.wrap_socket(raw, server_hostname="juju-mongodb")
            break
        except ssl.SSLCertVerificationError as exc:
            raise Refused(
                f"juju.worker.peergrouper cannot connect to mongo: TLS: {exc.verify_message}"
            ) from exc
        except OSError as exc:
            last = str(exc)
            time.sleep(MGO_SYNC_SHORT_DELAY)
    if sock is None:
        raise Refused(f"juju.worker.peergrouper cannot connect to mongo at 127.0.0.1:{port}: {last}")
    tag = conf.get("tag", f"machine-{machine_id}")
    reply = common.command(
        sock,
        "admin",
        {"authenticate": 1, "user": tag, "pwd": conf.get("statepassword", ""), "mechanism": "SCRAM-SHA-1"},
    )
    if not reply.get("ok"):
        raise Refused(f"juju.worker.peergrouper cannot log in to mongo as {tag}: {reply.get('errmsg')}")

    def find(coll: str, filt: dict) -> list[dict]:
        r = common.command(sock, "juju", {"find": coll, "filter": filt})
        if not r.get("ok"):
            raise Refused(f"juju.worker.peergrouper cannot read juju.{coll}: {r.get('errmsg')}")
        return r["cursor"]["firstBatch"]

    ctrl = find("controllers", {"_id": "e"})
    if not ctrl:
        raise Refused("juju.worker.peergrouper controller info document 'e' not found")
    model_uuid = ctrl[0].get("model-uuid")
    machines = find("machines", {"_id": f"{model_uuid}:{machine_id}"})
    if not machines:
        raise Refused(f"juju.worker.peergrouper machine {machine_id} not found in model {model_uuid}")
    mdoc = machines[0]
    if mdoc.get("passwordhash") != agent_password_hash(conf.get("apipassword", "")):
        raise Refused(
            f"juju.apiserver login for {tag} failed: invalid entity name or password (unauthorized "
            f"access); peergrouper not started"
        )
    addrs = [a.get("value") for a in mdoc.get("addresses") or []]
    mine = [a for a in addrs if a and is_local_ip(a)]
    if not mine:
        raise Refused(
            f"juju.worker.peergrouper machine {machine_id} addresses {addrs} do not include an address "
            f"of this host; cannot determine the controller's mongo address"
        )
    if machine_id not in [str(i) for i in ctrl[0].get("controller-ids") or []]:
        raise Refused(
            f"juju.worker.peergrouper machine {machine_id} is not in controller-ids "
            f"{ctrl[0].get('controller-ids')}; not a controller"
        )
    nodes = find("controllerNodes", {"_id": {"$in": [machine_id, f"{model_uuid}:{machine_id}"]}})
    if not nodes:
        raise Refused(f"juju.worker.peergrouper controller node {machine_id} not found")
    if heal:
        _heal(sock, conf, machine_id, str(model_uuid), mdoc, mine, log)
    peer_group(sock, conf, [str(i) for i in ctrl[0].get("controller-ids") or []], str(model_uuid), find,
               log if heal else None)
    sock.close()
    log(
        "INFO",
        "juju.worker.peergrouper",
        f"controller addresses ok: machine {machine_id} at {', '.join(mine)}",
    )
    return mine


def _tracked_controllers(ids: list[str], model_uuid: str, find: Any,
                         log: AgentLog | None) -> dict[str, peergrouper.Controller]:
    """worker.go updateControllerNodes: the controller-ids with a controllerNodes document and a
    machine whose status is not pending (a missing one is skipped with Juju's warning)."""
    out: dict[str, peergrouper.Controller] = {}
    for cid in ids:
        node = find("controllerNodes", {"_id": cid})
        machine = find("machines", {"_id": f"{model_uuid}:{cid}"})
        if not node or not machine:
            if log:
                log("WARNING", "juju.worker.peergrouper",
                    f'controller "{cid}" from controller list not found')
            continue
        status = find("statuses", {"_id": f"{model_uuid}:m#{cid}"})
        if status and status[0].get("status") == "pending":
            continue
        m = machine[0]
        addrs = tuple(
            (str(a.get("value") or ""), str(a.get("networkscope") or ""))
            for a in [*(m.get("addresses") or []), *(m.get("machineaddresses") or [])]
            if isinstance(a, dict)
        )
        out[cid] = peergrouper.Controller(
            cid, bool(node[0].get("wants-vote")), bool(node[0].get("has-vote")), addrs
        )
    return out


def peer_group(sock: Any, conf: dict[str, Any], ids: list[str], model_uuid: str, find: Any,
               log: AgentLog | None) -> None:
    """One round of the peergrouper (peergrouper.py: worker.go updateReplicaSet): compute the desired
    peer group; where the local mongod is PRIMARY (every controller's mgo session writes to the
    primary; the stand-in dials localhost only) set the new voters' `has-vote`, reconfigure the set,
    clear the removed voters' `has-vote`. Then raise Refused when the set has no primary (jujud's
    state connection needs one: mgo "no reachable servers"), or when the peer group cannot be
    computed (real jujud keeps its API while its peergrouper fails every round: STRICTER)."""
    say = log or (lambda *a: None)
    status = common.command(sock, "admin", {"replSetGetStatus": 1})
    config = common.command(sock, "admin", {"replSetGetConfig": 1})
    if not status.get("ok") or not config.get("ok"):
        raise Refused(f"juju.worker.peergrouper cannot get replica set status: "
                      f"{status.get('errmsg') or config.get('errmsg')}")
    cfg = config["config"]
    states = {m.get("_id"): (bool(m.get("health")), int(m.get("state", 0)))
              for m in status.get("members", [])}
    controllers = _tracked_controllers(ids, model_uuid, find, log)
    try:
        desired = peergrouper.desired_peer_group(controllers, list(cfg.get("members") or []), states,
                                                 int(conf.get("stateport", 37017)))
    except peergrouper.PeerGroupError as exc:
        raise Refused(f"juju.worker.peergrouper computing desired peer group: {exc}") from exc
    if desired.step_down_primary:
        say("INFO", "juju.worker.peergrouper",
            "mongo primary controller needs to be removed, first requesting it to step down")
    elif int(status.get("myState", 0)) == peergrouper.PRIMARY:
        _apply(sock, conf, cfg, controllers, desired, say)
        status = common.command(sock, "admin", {"replSetGetStatus": 1})
    if not any(int(m.get("state", 0)) == peergrouper.PRIMARY for m in status.get("members", [])):
        now = common.command(sock, "admin", {"replSetGetConfig": 1}).get("config") or cfg
        voters = [m["host"] for m in now["members"] if peergrouper.is_voting(m)]
        raise Refused(f"juju.worker.peergrouper the replica set has no primary: a majority of its voters "
                      f"{voters} is not reachable; juju.state cannot connect to mongo: no reachable servers")


def _apply(sock: Any, conf: dict[str, Any], cfg: dict[str, Any],
           controllers: dict[str, peergrouper.Controller], desired: peergrouper.Desired, say: Any) -> None:
    """worker.go updateReplicaSet: has-vote true for new voters, replSetReconfig when the set
    changes (reverting those on failure, "cannot set replicaset"), has-vote false for removed ones."""
    added = [i for i, v in desired.voting.items() if v and not controllers[i].has_vote]
    removed = [i for i, v in desired.voting.items() if not v and controllers[i].has_vote]

    def set_has_vote(ids: list[str], value: bool) -> None:
        if ids:
            say("INFO", "juju.worker.peergrouper",
                f"setting HasVote={str(value).lower()} on nodes {sorted(ids)}")
        for i in ids:
            update(sock, "controllerNodes", i, {"has-vote": value}, sstxn=_sstxn(conf))

    set_has_vote(added, True)
    if desired.is_changed:
        members = sorted(desired.members.values(), key=lambda m: int(m["_id"]))
        new = {**cfg, "members": members, "version": int(cfg.get("version", 1)) + 1}
        reply = common.command(sock, "admin", {"replSetReconfig": new})
        if not reply.get("ok"):
            set_has_vote(added, False)
            say("ERROR", "juju.worker.peergrouper", f"cannot set replicaset: {reply.get('errmsg')}")
            return
        say("INFO", "juju.worker.peergrouper", "successfully updated replica set")
    set_has_vote(removed, False)


def _address(ip: str, origin: str | None = None) -> dict[str, Any]:
    kind = "ipv6" if ":" in ip else "ipv4"
    d: dict[str, Any] = {"value": ip, "addresstype": kind, "networkscope": "local-cloud"}
    if origin:
        d["origin"] = origin
    return d


def _heal(
    sock: Any,
    conf: dict[str, Any],
    machine_id: str,
    model_uuid: str,
    mdoc: dict,
    mine: list[str],
    log: AgentLog,
) -> None:
    """Do what the machiner, peergrouper and api-address-updater do on a controller whose addresses
    changed (see the module docstring); each only when what is recorded lacks this host."""
    port = int(conf.get("apiport", 17070))
    maddrs = [a.get("value") for a in mdoc.get("machineaddresses") or []]
    if not any(is_local_ip(a) for a in maddrs if a):
        local = [a for a in mdoc.get("machineaddresses") or [] if a.get("networkscope") == "local-machine"]
        update(sock, "machines", f"{model_uuid}:{machine_id}",
               {"machineaddresses": [_address(ip, "machine") for ip in mine] + local}, sstxn=_sstxn(conf))
        log("INFO", "juju.worker.machiner", f"setting addresses for machine-{machine_id} to {mine}")
    for key in ("apiHostPorts", "apiHostPortsForAgents"):
        r = common.command(sock, "juju", {"find": "controllers", "filter": {"_id": key}})
        docs = r.get("cursor", {}).get("firstBatch", []) if r.get("ok") else []
        hosts = [h.get("value") for srv in (docs[0].get("apihostports") or [] if docs else []) for h in srv]
        if not any(is_local_ip(h) for h in hosts if h):
            servers = [[{**_address(ip), "port": port} for ip in mine]]
            update(sock, "controllers", key, {"apihostports": servers}, sstxn=_sstxn(conf))
            log("INFO", "juju.worker.peergrouper", f"publishing {key} {mine}")
    api = conf.get("apiaddresses") or []
    hostports = [a.rsplit(":", 1) for a in api if ":" in a]
    if not any(p == str(port) and is_local_ip(h.strip("[]")) for h, p in hostports):
        heal_agent_conf(conf, machine_id, [f"{ip}:{port}" for ip in mine])
        log("INFO", "juju.worker.apiaddressupdater", f"API addresses updated to [{', '.join(mine)}]")


def _sstxn(conf: dict[str, Any]) -> bool:
    """Juju 3.x writes state with server-side transactions always (juju/juju state/database.go
    ServerSideTransactions: true); 2.x with client-side mgo/txn (sstxn only behind a feature flag)."""
    return str(conf.get("upgradedToVersion", "")).startswith("3.")


def update(sock: Any, coll: str, doc_id: str, values: dict[str, Any], *, sstxn: bool = False) -> None:
    """$set `values` in one juju document; with `sstxn` as juju/mgo v3.0.9 sstxn/sstxn.go runTxn
    does it: in one MongoDB transaction, the assert (a find), the update with `$set` of the next
    `txn-revno` (applyUpdate), the txns.log document {_id, <coll>: {d: [ids], r: [revnos]}}
    (updateLog), commit."""
    if not sstxn:
        common.command(sock, "juju",
                       {"update": coll, "updates": [{"q": {"_id": doc_id}, "u": {"$set": values}}]})
        return
    txn = {"lsid": {"id": bson.Binary(uuid.uuid4().bytes, 4)}, "txnNumber": bson.Int64(1),
           "autocommit": False}
    found = common.command(sock, "juju",
                           {"find": coll, "filter": {"_id": doc_id}, **txn, "startTransaction": True})
    docs = found.get("cursor", {}).get("firstBatch", []) if found.get("ok") else []
    revno = bson.Int64(int(docs[0].get("txn-revno", 0) if docs else 0) + 1)
    u = {"$set": {**values, "txn-revno": revno}}
    common.command(sock, "juju", {"update": coll, "updates": [{"q": {"_id": doc_id}, "u": u}], **txn})
    log = {"_id": bson.ObjectId(), coll: {"d": [doc_id], "r": [revno]}}
    common.command(sock, "juju", {"insert": "txns.log", "documents": [log], **txn})
    common.command(sock, "admin", {"commitTransaction": 1, **txn})


def heal_agent_conf(conf: dict[str, Any], machine_id: str, entries: list[str]) -> None:
    """Rewrite agent.conf's `apiaddresses` block (mode kept: 0600), as the api-address-updater does."""
    path = os.path.join(conf.get("datadir", "/var/lib/juju"), "agents", f"machine-{machine_id}", "agent.conf")
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    out, skip = [], False
    for line in lines:
        if skip and line.startswith("- "):
            continue
        skip = False
        if line.startswith("apiaddresses:"):
            out.append("apiaddresses:\n")
            out.extend(f"- {e}\n" for e in entries)
            skip = True
            continue
        out.append(line)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(out))
    os.replace(tmp, path)
    conf["apiaddresses"] = entries


def controller_ip_context(conf: dict[str, Any], ips: list[str], default: ssl.SSLContext) -> ssl.SSLContext:
    """Return `default` (server.pem) with an SNI callback handing a hello without a server name a
    context serving a fresh `controllerip` leaf for `ips` signed by the agent.conf CA (made with
    openssl now: juju/juju worker/certupdater makes it at every start; pki/tls/sni.go picks it)."""
    work = tempfile.mkdtemp(prefix="controllerip-")
    try:
        ca, key = os.path.join(work, "ca.pem"), os.path.join(work, "ca.key")
        with open(ca, "w") as f:
            f.write(conf.get("cacert", ""))
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(conf.get("caprivatekey", ""))
        sans = ",".join(f"IP:{ip}" for ip in [*ips, "127.0.0.1"])
        with open(os.path.join(work, "ext"), "w") as f:
            f.write(f"subjectAltName={sans}\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n")
        run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=work)  # noqa: E731
        run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "leaf.key", "-subj", "/O=Juju/CN=Juju server certificate", "-out", "leaf.csr")
        run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
            str(int.from_bytes(os.urandom(8), "big")), "-days", "3650", "-extfile", "ext", "-out", "leaf.pem")
        leaf = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf.load_cert_chain(os.path.join(work, "leaf.pem"), os.path.join(work, "leaf.key"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def pick(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name is None:
            sslobj.context = leaf

    default.sni_callback = pick
    return default


JUJU_DB_SNAP_COMMON = "/var/snap/juju-db/common"


def ensure_mongo_snap(conf: dict[str, Any], log: AgentLog) -> None:
    """On a controller whose juju-db is the snap, do what Juju's mongo.EnsureServer does at every
    machine agent start (juju/juju mongo/mongo.go ensureServer, 2.9 era; snapd.py has the sources):
    `snap set juju-db configpath=<SNAP_COMMON>/juju-db.config`, then restart the snap's daemon
    (service.ManuallyRestart). Raise Refused when snap fails (EnsureServer's error stops the agent).
    Not imitated: writing juju-db.config itself (mongoArgs.writeConfig): the stand-in keeps the one
    there."""
    if not os.path.isdir("/snap/juju-db") or not shutil.which("snap"):
        return
    log("INFO", "juju.mongo", f"Ensuring mongo server is running; data directory {JUJU_DB_SNAP_COMMON}; "
        f"port {conf.get('stateport', 37017)}")
    config = f"{JUJU_DB_SNAP_COMMON}/juju-db.config"
    for args in (["set", "juju-db", f"configpath={config}"], ["restart", "juju-db"]):
        r = subprocess.run(["snap", *args], capture_output=True, text=True)
        if r.returncode:
            raise Refused(f"juju.mongo unable to (re)start mongod service: snap {' '.join(args)}: "
                          f"{(r.stderr or r.stdout).strip()}")


def dqlite_ready(data_dir: str, log: AgentLog) -> bool:
    """Return True when <data_dir>/dqlite holds a node that ran before (made 0700 if missing) with an
    info.yaml whose Address cluster.yaml lists; else log what the dbaccessor logs and return False
    (see the module docstring for the Juju source)."""
    path = os.path.join(data_dir, "dqlite")
    os.makedirs(path, mode=0o700, exist_ok=True)
    if not os.listdir(path):
        log("INFO", "juju.worker.dbaccessor", "no addresses available for this Dqlite node to join cluster")
        return False
    try:
        with open(os.path.join(path, "info.yaml")) as f:
            info = f.read()
        with open(os.path.join(path, "cluster.yaml")) as f:
            cluster = f.read()
    except OSError as exc:
        log("ERROR", "juju.worker.dbaccessor", f"reading Dqlite node files: {exc}")
        return False
    address = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                    if line.startswith("Address:")), "")
    if not address or f"Address: {address}" not in cluster:
        log("ERROR", "juju.worker.dbaccessor", f"this Dqlite node ({address or 'no address'}) is not in "
            "its cluster.yaml; cannot start the node")
        return False
    log("INFO", "juju.worker.dbaccessor", f"host is configured as a Dqlite node ({address})")
    return True


class ApiHandler(socketserver.BaseRequestHandler):
    """Minimal HTTPS answer on the API port."""

    server: ApiServer

    def handle(self) -> None:
        try:
            conn = self.server.tls.wrap_socket(self.request, server_side=True)
            conn.settimeout(5)
            head = api.read_http_head(conn)
            if api.is_websocket(head):  # an agent's API connection (api.py)
                api.serve(conn, head, self.server.conf, self.server.log, self.server.version)
                conn.close()
                return
            body = (json.dumps({"version": self.server.version, "machine": self.server.machine_id})).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            conn.close()
        except (OSError, ssl.SSLError):
            return


class ApiServer(socketserver.ThreadingTCPServer):
    """The API listener."""

    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext
    version: str
    machine_id: str
    conf: dict[str, Any]
    log: AgentLog


def main(version: str, argv: list[str] | None = None) -> int:
    """Entry point: `jujud machine --data-dir D --machine-id N [--debug]`; `jujud version`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["version"], ["--version"]):
        print(version)
        return 0
    if argv[:1] not in (["machine"], ["unit"]):
        print(f"ERROR unrecognized command: jujud {argv[0] if argv else ''}", file=sys.stderr)
        return 2
    opts: dict[str, str] = {}
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, value = a.lstrip("-").partition("=")
        if name in ("debug", "verbose", "show-log"):
            opts[name] = "true"
        elif name in ("data-dir", "machine-id", "unit-name", "log-to-stderr"):
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            opts[name] = value
        else:
            print(f"ERROR flag provided but not defined: {a}", file=sys.stderr)
            return 2
        i += 1
    data_dir = opts.get("data-dir", "/var/lib/juju")
    if argv[0] == "unit":  # a 2.8 unit agent service (agent.py)
        if not opts.get("unit-name"):
            print("ERROR --unit-name option must be set", file=sys.stderr)
            return 2
        return agent.run_unit(data_dir, opts["unit-name"], parse_agent_conf)
    mid = opts.get("machine-id")
    if not mid:
        print("ERROR --machine-id option must be set", file=sys.stderr)
        return 2
    conf_path = os.path.join(data_dir, "agents", f"machine-{mid}", "agent.conf")
    try:
        with open(conf_path) as f:
            conf = parse_agent_conf(f.read())
    except OSError as exc:
        print(f"ERROR cannot read agent configuration {conf_path}: {exc.strerror}", file=sys.stderr)
        return 1
    log_dir = conf.get("logdir", "/var/log/juju")
    os.makedirs(log_dir, exist_ok=True)
    if "JobManageModel" not in (conf.get("jobs") or []):  # a workload machine's agent (agent.py)
        return agent.run_machine(data_dir, mid, parse_agent_conf, version)
    log = AgentLog(os.path.join(log_dir, f"machine-{mid}.log"))
    log("INFO", "juju.cmd", f"supercommand.go:56 running jujud [{version.rsplit('-', 2)[0]} 0 gc go1.14.15]")
    log("INFO", "juju.agent", f'agent.go:176 reading agent config, format "2.0" from {conf_path}')
    log(
        "INFO",
        "juju.worker.upgradesteps",
        f"upgrade steps for {conf.get('upgradedToVersion', version)} have already been run.",
    )
    try:
        ensure_mongo_snap(conf, log)
        mine = check_state(conf, mid, log)
    except Refused as exc:
        log("ERROR", str(exc).split(" ", 1)[0], str(exc).split(" ", 1)[1])
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    except (OSError, common.ProtocolError) as exc:
        log("ERROR", "juju.worker.peergrouper", f"lost connection to mongo: {exc}")
        return 1
    if int(version.split(".", 1)[0]) >= 3 and not dqlite_ready(data_dir, log):
        while True:  # the dbaccessor waits for peers that never come: no lease manager, no API
            time.sleep(3600)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(data_dir, "server.pem"))
    try:
        tls = controller_ip_context(conf, mine, tls)
    except (OSError, subprocess.CalledProcessError, ssl.SSLError) as exc:
        log("ERROR", "juju.worker.certupdater", f"cannot make the controller ip certificate: {exc}")
        return 1
    port = int(conf.get("apiport", 17070))
    try:
        srv = ApiServer(("0.0.0.0", port), ApiHandler)
    except OSError as exc:
        log("ERROR", "juju.worker.apiserver", f"cannot listen on :{port}: {exc.strerror}")
        return 1
    srv.tls, srv.version, srv.machine_id, srv.conf, srv.log = tls, version, mid, conf, log
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    log("INFO", "juju.worker.apiserver", f'listening on "[::]:{port}"')
    log("INFO", "juju.worker.peergrouper", "peergrouper started")
    while True:
        time.sleep(15)
        try:
            check_state(conf, mid, lambda *a: None, heal=False)  # type: ignore[arg-type]
        except Refused as exc:
            log("ERROR", str(exc).split(" ", 1)[0], str(exc).split(" ", 1)[1])
            srv.shutdown()
            return 1
        except (OSError, common.ProtocolError) as exc:
            log(
                "ERROR", "juju.worker.dependency", f'"state" manifold worker returned unexpected error: {exc}'
            )
            srv.shutdown()
            return 1
