"""Stand-in for `jujud` (the Juju machine agent, 2.9.42 focal / 2.8.10 bionic) as installed in
/var/lib/juju/tools/<version>-<series>-amd64/jujud.  Test code, never shipped.

`jujud machine --data-dir /var/lib/juju --machine-id N [--debug]` reads agents/machine-N/agent.conf,
authenticates to juju-db (127.0.0.1:stateport, TLS verified against the agent.conf CA, server name
juju-mongodb) as machine-N with its statepassword, and refuses to run - logging a line containing
"peergrouper" and the reason to /var/log/juju/machine-N.log and exiting non-zero - unless:
  * the machines document `<controller-model-uuid>:N` lists one of this host's IPs in both
    `addresses` and `machineaddresses` and its `passwordhash` matches the agent's apipassword,
  * the `controllers` document `apiHostPorts` lists one of this host's IPs,
  * agent.conf `apiaddresses` contains `<this host's IP>:<apiport>`.
Then it serves TLS on apiport with /var/lib/juju/server.pem (HTTP answers) and keeps checking the DB.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from typing import Any

from . import agent, api, common


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


class Refused(Exception):
    """The agent refuses to run."""


def check_state(conf: dict[str, Any], machine_id: str, log: AgentLog) -> None:
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
            time.sleep(1)
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
    maddrs = [a.get("value") for a in mdoc.get("machineaddresses") or []]
    mine = [a for a in addrs if a and is_local_ip(a)]
    if not mine:
        raise Refused(
            f"juju.worker.peergrouper machine {machine_id} addresses {addrs} do not include an address "
            f"of this host; cannot determine the controller's mongo address"
        )
    if not any(is_local_ip(a) for a in maddrs if a):
        raise Refused(
            f"juju.worker.peergrouper machine {machine_id} machineaddresses {maddrs} do not include "
            f"an address of this host"
        )
    hp = find("controllers", {"_id": "apiHostPorts"})
    hosts = [h.get("value") for server in (hp[0].get("apihostports") or [] if hp else []) for h in server]
    if not any(is_local_ip(h) for h in hosts if h):
        raise Refused(f"juju.worker.peergrouper apiHostPorts {hosts} do not include an address of this host")
    api = conf.get("apiaddresses") or []
    apiport = str(conf.get("apiport", 17070))
    if not any(a.rsplit(":", 1)[-1] == apiport and is_local_ip(a.rsplit(":", 1)[0]) for a in api):
        raise Refused(
            f"juju.worker.peergrouper agent.conf apiaddresses {api} do not include this host's "
            f"address with port {apiport}"
        )
    sock.close()
    log(
        "INFO",
        "juju.worker.peergrouper",
        f"controller addresses ok: machine {machine_id} at {', '.join(mine)}",
    )


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
        check_state(conf, mid, log)
    except Refused as exc:
        log("ERROR", str(exc).split(" ", 1)[0], str(exc).split(" ", 1)[1])
        print(f"ERROR {exc}", file=sys.stderr)
        return 1
    except (OSError, common.ProtocolError) as exc:
        log("ERROR", "juju.worker.peergrouper", f"lost connection to mongo: {exc}")
        return 1
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(data_dir, "server.pem"))
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
            check_state(conf, mid, lambda *a: None)  # type: ignore[arg-type]
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
