"""Stand-in for the Juju API server's agent login (Juju 2.8.10 / 2.9.42), served by the controller's
jujud stand-in on its API port, and the client side the workload agent stand-in (agent.py) uses.
Test code, never shipped.

Protocol, as Juju speaks it:
  * TLS; the client verifies the controller CA from its agent.conf `cacert` and sends the server
    name "juju-apiserver" (juju api/apiclient.go NewTLSConfig: "We want to be specific here").
  * A websocket (RFC 6455) on `/model/<model-uuid>/api` (api/apiclient.go apiPath; apiserver
    apiserver.go `/model/:modeluuid/api`); every frame from the client is masked (RFC 6455 §5.1:
    the server closes on an unmasked one).
  * JSON-RPC messages (rpc/jsoncodec/codec.go outMsgV1/inMsgV1): a request
    {"request-id": N, "type": "Admin", "version": 3, "request": "Login",
     "params": {"auth-tag": TAG, "credentials": PASSWORD, "nonce": NONCE}}
    and a response {"request-id": N, "response": {...}} or
    {"request-id": N, "error": MSG, "error-code": CODE, "response": {}}.
  * Login (apiserver/admin.go login -> authentication/agent.go Authenticate): the model of the URL
    must exist; the entity (machine-K in machines `<model>:K`, unit-A-N in units `<model>:A/N`) must
    exist, not be dead, and `PasswordValid` (state/machine.go, state/unit.go: AgentPasswordHash of
    the credentials equals `passwordhash`), else "invalid entity name or password" with code
    "unauthorized access" (apiserver/common/errors.go ErrBadCreds); a machine must be provisioned
    with that nonce (state/machine.go CheckProvisioned) else "machine K not provisioned" code
    "not provisioned" (apiserver/admin.go).
  * After login the agent keeps the connection and calls Pinger.Ping (api/base Pinger facade).
Stricter than Juju: only Admin.Login v3 and Pinger.Ping are served to an agent; any other call is an
error. A USER (auth-tag user-NAME) logs in on `/api` or `/model/<uuid>/api` and gets the read-only
calls of clientapi.py (what python-libjuju needs to list models and machines).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import socket
import ssl
import struct
from typing import Any

from . import clientapi, common

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
PATH_RE = re.compile(r"^/model/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/api$")
UNIT_TAG_RE = re.compile(r"^unit-([a-z][a-z0-9-]*)-(\d+)$")
MACHINE_TAG_RE = re.compile(r"^machine-(\d+(?:-[a-z]+-\d+)*)$")
SERVER_NAME = "juju-apiserver"
CONTROLLER_PATH = "/api"  # apiserver/apiserver.go: the controller-only API (clients, no model)


class WSClosed(Exception):
    """The websocket closed (or broke the protocol)."""


def agent_password_hash(password: str) -> str:
    """Return juju/utils AgentPasswordHash: base64 of the first 18 bytes of sha512(password)."""
    return base64.b64encode(hashlib.sha512(password.encode()).digest()[:18]).decode()


# --------------------------------------------------------------------------- websocket framing


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WSClosed("connection closed")
        buf += chunk
    return buf


def send_frame(sock: socket.socket, text: str, mask: bool, opcode: int = 1) -> None:
    """Send one final frame (text by default); a client masks it (RFC 6455 §5.3)."""
    data = text.encode()
    head = bytes([0x80 | opcode])
    bit = 0x80 if mask else 0
    if len(data) < 126:
        head += bytes([bit | len(data)])
    elif len(data) < 65536:
        head += bytes([bit | 126]) + struct.pack(">H", len(data))
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", len(data))
    if mask:
        key = os.urandom(4)
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
        head += key
    sock.sendall(head + data)


def recv_message(sock: socket.socket, expect_masked: bool) -> str:
    """Return the next text message (pings answered, fragments joined). Raise WSClosed on close or
    on a frame masked the wrong way (the server requires masked client frames, RFC 6455 §5.1)."""
    parts: list[bytes] = []
    while True:
        b0, b1 = _recv_exact(sock, 2)
        opcode, masked, length = b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        if masked != expect_masked:
            raise WSClosed("frame masking violates RFC 6455 §5.1")
        if length == 126:
            length = struct.unpack(">H", _recv_exact(sock, 2))[0]
        elif length == 127:
            length = struct.unpack(">Q", _recv_exact(sock, 8))[0]
        key = _recv_exact(sock, 4) if masked else b""
        data = _recv_exact(sock, length)
        if masked:
            data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
        if opcode == 8:
            raise WSClosed("close frame")
        if opcode == 9:
            send_frame(sock, data.decode(errors="replace"), mask=not expect_masked, opcode=10)
            continue
        if opcode == 10:
            continue
        parts.append(data)
        if b0 & 0x80:
            return b"".join(parts).decode()


def read_http_head(sock: socket.socket, limit: int = 65536) -> bytes:
    """Return the bytes of an HTTP request/response head (up to the blank line)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            break
    return buf


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """Given an HTTP head, return (first line, lower-cased headers)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


def is_websocket(head: bytes) -> bool:
    """Return True if the request head asks for a websocket upgrade."""
    _line, headers = parse_head(head)
    return headers.get("upgrade", "").lower() == "websocket"


# --------------------------------------------------------------------------- server side


def _db_find(conf: dict[str, Any], coll: str, filt: dict) -> list[dict]:
    """Query juju.<coll> as the controller agent (TLS to 127.0.0.1:stateport, its statepassword)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=conf.get("cacert", ""))
    # as jujud.check_state: the controller certificate as client certificate (juju-db 4.4.30
    # requires one, juju/juju#22455)
    pem = os.path.join(str(conf.get("datadir") or "/var/lib/juju"), "server.pem")
    if os.path.exists(pem):
        ctx.load_cert_chain(pem)
    raw = socket.create_connection(("127.0.0.1", int(conf.get("stateport", 37017))), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="juju-mongodb") as sock:
        auth = common.command(sock, "admin", {
            "authenticate": 1, "user": conf.get("tag", ""), "pwd": conf.get("statepassword", ""),
            "mechanism": "SCRAM-SHA-1"})
        if not auth.get("ok"):
            raise OSError(f"cannot log in to mongo: {auth.get('errmsg')}")
        reply = common.command(sock, "juju", {"find": coll, "filter": filt})
        if not reply.get("ok"):
            raise OSError(f"cannot read juju.{coll}: {reply.get('errmsg')}")
        return list(reply["cursor"]["firstBatch"])


def check_login(conf: dict[str, Any], model_uuid: str, params: dict[str, Any]) -> tuple[str, str] | None:
    """Given the controller's agent.conf, the URL's model and Login params, return None when the
    login is good, else (error message, error code) as apiserver/admin.go answers."""
    bad = ("invalid entity name or password (unauthorized access)", "unauthorized access")
    if not _db_find(conf, "models", {"_id": model_uuid}):
        return (f'unknown model: "{model_uuid}" (model not found)', "model not found")
    tag = str(params.get("auth-tag", ""))
    password = str(params.get("credentials", ""))
    m = MACHINE_TAG_RE.match(tag)
    u = UNIT_TAG_RE.match(tag)
    if m:
        mid = m.group(1).replace("-", "/")
        docs = _db_find(conf, "machines", {"_id": f"{model_uuid}:{mid}"})
    elif u:
        docs = _db_find(conf, "units", {"_id": f"{model_uuid}:{u.group(1)}/{u.group(2)}"})
    else:
        return bad
    if not docs or docs[0].get("life") == 2 or docs[0].get("passwordhash") != agent_password_hash(password):
        return bad
    if m and docs[0].get("nonce") != params.get("nonce"):
        return (f"machine {m.group(1)} not provisioned (not provisioned)", "not provisioned")
    return None


def serve(conn: ssl.SSLSocket, head: bytes, conf: dict[str, Any], log: Any, version: str) -> None:
    """Serve one websocket API connection whose HTTP head was read: handshake, then Login and
    Ping requests until the client goes away."""
    line, headers = parse_head(head)
    parts = line.split()
    path = parts[1] if len(parts) >= 2 else ""
    m = PATH_RE.match(path)
    key = headers.get("sec-websocket-key", "")
    if (not m and path != CONTROLLER_PATH) or headers.get("sec-websocket-version") != "13" or not key:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        return
    model_uuid = m.group(1) if m else ""  # "" on /api: only a user logs in there
    user: clientapi.UserSession | None = None
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
    conn.settimeout(None)
    logged_in: str | None = None
    while True:
        try:
            msg = json.loads(recv_message(conn, expect_masked=True))
        except (WSClosed, OSError, ValueError):
            return
        rid = msg.get("request-id")
        kind, req = msg.get("type"), msg.get("request")
        out: dict[str, Any] = {"request-id": rid}
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        if user is None and logged_in is None and kind == "Admin" and req == "Login" and \
                msg.get("version") == 3 and clientapi.is_user_tag(str(params.get("auth-tag", ""))):
            user = _user_login(conn, conf, model_uuid or None, params, out, log, version)
            if user is not None:
                logged_in = str(params["auth-tag"])
            continue
        if user is not None:
            _user_call(conn, user, msg, out, log)
            continue
        if not model_uuid:  # an agent on /api: stricter than Juju, agents log in to a model
            out.update({"error": clientapi.BAD_CREDS[0], "error-code": clientapi.BAD_CREDS[1],
                        "response": {}})
        elif kind == "Admin" and req == "Login" and msg.get("version") == 3 and logged_in is None:
            try:
                failure = check_login(conf, model_uuid, msg.get("params") or {})
            except (OSError, common.ProtocolError) as exc:
                failure = (f"cannot check credentials: {exc}", "")
            if failure is None:
                logged_in = str(msg["params"]["auth-tag"])
                log("INFO", "juju.apiserver", f"agent login: {logged_in} for model {model_uuid}")
                out["response"] = {"model-tag": f"model-{model_uuid}",
                                   "controller-tag": conf.get("controller", ""),
                                   "server-version": version.split("-")[0],
                                   "facades": [{"name": "Pinger", "versions": [1]}]}
            else:
                out.update({"error": failure[0], "error-code": failure[1], "response": {}})
        elif kind == "Pinger" and req == "Ping" and logged_in is not None:
            out["response"] = {}
        else:
            out.update({"error": f'unknown object type "{kind}" (not implemented)',
                        "error-code": "not implemented", "response": {}})
        try:
            send_frame(conn, json.dumps(out), mask=False)
        except OSError:
            return


def _db_reader(conf: dict[str, Any]) -> clientapi.Find:
    return lambda coll, filt: _db_find(conf, coll, filt)


def _send(conn: ssl.SSLSocket, out: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        send_frame(conn, clientapi.dumps(out), mask=False)


def _user_login(conn: ssl.SSLSocket, conf: dict[str, Any], model_uuid: str | None, params: dict,
                out: dict[str, Any], log: Any, version: str) -> clientapi.UserSession | None:
    """Answer a user's Admin.Login; return the session when it is good (clientapi.check_user_login)."""
    find = _db_reader(conf)
    try:
        checked = clientapi.check_user_login(find, model_uuid, params)
    except (OSError, common.ProtocolError) as exc:
        checked = (f"cannot check credentials: {exc}", "")
    if isinstance(checked, tuple):
        out.update({"error": checked[0], "error-code": checked[1], "response": {}})
        _send(conn, out)
        return None
    log("INFO", "juju.apiserver", f"user login: {params.get('auth-tag')} for "
        f"{'model ' + model_uuid if model_uuid else 'the controller'}")
    out["response"] = clientapi.login_result(find, conf, model_uuid, checked, version)
    _send(conn, out)
    return clientapi.UserSession(find, conf, model_uuid, checked, version)


def _user_call(conn: ssl.SSLSocket, user: clientapi.UserSession, msg: dict[str, Any],
               out: dict[str, Any], log: Any) -> None:
    """Answer one call of a logged-in user (a blocked AllWatcher.Next is answered by its Stop)."""
    log("DEBUG", "juju.rpc", f"user call {msg.get('type')}({msg.get('version')}).{msg.get('request')}")
    try:
        body = user.handle(msg)
    except clientapi.RPCError as exc:
        out.update({"error": exc.message, "error-code": exc.code, "response": {}})
        _send(conn, out)
        return
    except (OSError, common.ProtocolError) as exc:
        out.update({"error": f"cannot read the database: {exc}", "error-code": "", "response": {}})
        _send(conn, out)
        return
    if body is None:
        return
    out["response"] = body
    _send(conn, out)
    if msg.get("type") == "AllWatcher" and msg.get("request") == "Stop":
        blocked = user.stopped_next(msg)
        if blocked is not None:
            _send(conn, {"request-id": blocked, "error": "watcher was stopped", "error-code": "stopped",
                         "response": {}})


# --------------------------------------------------------------------------- client side


class LoginError(Exception):
    """The API refused the login (message and code as the server sent them)."""


def dial(address: str, cacert: str, model_uuid: str, timeout: float = 3.0) -> ssl.SSLSocket:
    """Open TLS + websocket to `host:port` for the model, verifying the controller CA with server
    name juju-apiserver. Raise OSError/ssl.SSLError/WSClosed if that fails."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=cacert)
    raw = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
    except BaseException:
        raw.close()
        raise
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /model/{model_uuid}/api HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "Origin: http://localhost/\r\n\r\n").encode())
    line, headers = parse_head(read_http_head(sock))
    want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    if " 101 " not in f"{line} " or headers.get("sec-websocket-accept") != want:
        sock.close()
        raise WSClosed(f"websocket handshake refused: {line}")
    return sock


def call(sock: ssl.SSLSocket, rid: int, kind: str, version: int, request: str, params: dict) -> dict:
    """Send one JSON-RPC request and return its response. Raise LoginError on an error reply."""
    send_frame(sock, json.dumps({"request-id": rid, "type": kind, "version": version, "request": request,
                                 "params": params}), mask=True)
    reply = json.loads(recv_message(sock, expect_masked=False))
    if reply.get("error"):
        raise LoginError(str(reply["error"]))
    return dict(reply.get("response") or {})
