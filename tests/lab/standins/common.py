"""Shared code of the lab stand-ins for MongoDB (mongod 4.4 / 3.2, mongo-tools 100.x / 3.2) and jujud.

Test code, never shipped.  Runs under the host's /usr/bin/python3 with Debian's python3-bson
(pymongo 3.11's bson) and also under pymongo 4's bson: only `bson.BSON.encode`, `bson.decode_all`,
`bson.ObjectId`, `bson.Binary`, `bson.Timestamp`, `bson.Int64`, `bson.Regex` are used (no json_util:
Debian's json_util imports pymongo, which the hosts do not have).

Storage format (what `mongod` keeps under --dbpath, also read by provision.read_db):
  <dbpath>/mongod.lock                    pid while running (flock held), empty after a clean shutdown
  <dbpath>/storage.bson                   {"engine": "wiredTiger", "version": "4.4.18"}
  <dbpath>/<db>/<coll>.bson               the documents, concatenated BSON (mongodump's own format)
  <dbpath>/<db>/<coll>.metadata.json      {"options": {}, "indexes": [...], "uuid": hex}
  <dbpath>/local/system.replset.bson      the replica-set config document (once initiated)
  <dbpath>/local/oplog.rs.bson            oplog entries {ts, t, h, v, op, ns, o, o2?, wall}
  <dbpath>/admin/system.users.bson        users with SCRAM-SHA-1 (+ SCRAM-SHA-256 on 4.4) credentials

Wire protocol between the stand-in tools and the stand-in mongod (TLS or plain TCP):
  request/response frames are single BSON documents (a BSON document carries its own length);
  raw data streams are 4-byte little-endian length + bytes chunks, ended by a zero-length chunk.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import socket
import ssl
import struct
import sys
import time
import uuid
from typing import Any

import bson

LIB_VERSION = 1
STREAM_CHUNK = 1 << 20
UTC = datetime.timezone.utc


# --------------------------------------------------------------------------- BSON helpers


def encode(doc: dict) -> bytes:
    """Given a document, return its BSON bytes (works with pymongo 3.x and 4.x bson)."""
    return bson.BSON.encode(doc)


def decode_all(data: bytes) -> list[dict]:
    """Given concatenated BSON bytes, return the documents."""
    return bson.decode_all(data)


def iter_file_docs(path: str):
    """Given a .bson file path, yield (raw_bytes, doc) one document at a time (streams big files)."""
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    with f:
        while True:
            head = f.read(4)
            if not head:
                return
            if len(head) < 4:
                raise ValueError(f"truncated BSON in {path}")
            (n,) = struct.unpack("<i", head)
            body = f.read(n - 4)
            if len(body) != n - 4:
                raise ValueError(f"truncated BSON in {path}")
            raw = head + body
            yield raw, bson.decode_all(raw)[0]


def read_file_docs(path: str) -> list[dict]:
    """Given a .bson file path, return all its documents ([] if missing)."""
    try:
        with open(path, "rb") as f:
            return bson.decode_all(f.read())
    except FileNotFoundError:
        return []


class DocCounter:
    """Counts complete BSON documents in a byte stream fed in arbitrary chunks; checks framing."""

    def __init__(self) -> None:
        self.count = 0
        self._need = 0  # bytes left in the current document
        self._head = b""

    def feed(self, chunk: bytes) -> None:
        """Given the next chunk of a concatenated-BSON stream, advance the count."""
        i, n = 0, len(chunk)
        unpack_from = struct.unpack_from
        while i < n:
            if not self._need and not self._head:  # fast path: whole documents inside this chunk
                count = 0
                while i + 4 <= n:
                    size = unpack_from("<i", chunk, i)[0]
                    if size < 5:
                        raise ValueError("invalid BSON document length")
                    if i + size > n:
                        break
                    i += size
                    count += 1
                self.count += count
                if i >= n:
                    return
            if self._need:
                take = min(self._need, n - i)
                self._need -= take
                i += take
                if not self._need:
                    self.count += 1
                continue
            want = 4 - len(self._head)
            self._head += chunk[i : i + want]
            i += min(want, n - i)
            if len(self._head) == 4:
                (size,) = struct.unpack("<i", self._head)
                if size < 5:
                    raise ValueError("invalid BSON document length")
                self._head = b""
                self._need = size - 4

    def complete(self) -> bool:
        """Return True when the stream ended on a document boundary."""
        return not self._need and not self._head


# --------------------------------------------------------------------------- extended JSON (relaxed)


def to_ejson(value: Any) -> Any:
    """Given a BSON value, return a JSON-serialisable relaxed Extended JSON value."""
    if isinstance(value, dict):
        return {str(k): to_ejson(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_ejson(v) for v in value]
    if isinstance(value, bson.ObjectId):
        return {"$oid": str(value)}
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        ms = int(value.timestamp() * 1000)
        if 0 <= ms < 253402300800000:
            return {"$date": value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"}
        return {"$date": {"$numberLong": str(ms)}}
    if isinstance(value, bson.Timestamp):
        return {"$timestamp": {"t": value.time, "i": value.inc}}
    if isinstance(value, bson.Binary | bytes):
        sub = getattr(value, "subtype", 0)
        return {"$binary": {"base64": base64.b64encode(bytes(value)).decode(), "subType": f"{sub:02x}"}}
    if isinstance(value, uuid.UUID):
        return {"$binary": {"base64": base64.b64encode(value.bytes).decode(), "subType": "04"}}
    if isinstance(value, bson.Regex):
        return {"$regularExpression": {"pattern": value.pattern, "options": str(value.flags or "")}}
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return {"$numberDouble": str(value)}
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)  # the shell is JavaScript: JSON.stringify(1.0) == "1"
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def from_ejson(value: Any) -> Any:
    """Given a value parsed from (relaxed or canonical) Extended JSON, return the BSON value."""
    if isinstance(value, list):
        return [from_ejson(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((k, v),) = value.items()
        if k == "$oid":
            return bson.ObjectId(v)
        if k == "$date":
            if isinstance(v, dict):
                v = int(v["$numberLong"])
            if isinstance(v, int | float):
                return datetime.datetime.fromtimestamp(v / 1000, UTC).replace(tzinfo=None)
            return (
                datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)
            )
        if k == "$numberLong":
            return bson.Int64(int(v))
        if k == "$numberInt":
            return int(v)
        if k == "$numberDouble":
            return float(v)
        if k == "$timestamp":
            return bson.Timestamp(int(v["t"]), int(v["i"]))
        if k == "$binary" and isinstance(v, dict):
            return bson.Binary(base64.b64decode(v["base64"]), int(v["subType"], 16))
        if k == "$regularExpression":
            return bson.Regex(v["pattern"], v.get("options", ""))
    return {k: from_ejson(v) for k, v in value.items()}


def dumps_ejson(doc: Any) -> str:
    """Given a BSON document, return one line of relaxed Extended JSON."""
    return json.dumps(to_ejson(doc), separators=(",", ":"))


# --------------------------------------------------------------------------- credentials (SCRAM)


def scram_credentials(
    user: str, password: str, with_sha256: bool, iterations1: int = 10000, iterations256: int = 15000
) -> dict:
    """Given a user and password, return the `credentials` subdocument mongod stores (hashed only)."""
    creds: dict[str, Any] = {}
    digest = hashlib.md5(f"{user}:mongo:{password}".encode()).hexdigest().encode()
    creds["SCRAM-SHA-1"] = _scram(digest, "sha1", os.urandom(16), iterations1)
    if with_sha256:
        creds["SCRAM-SHA-256"] = _scram(password.encode(), "sha256", os.urandom(28), iterations256)
    return creds


def _scram(secret: bytes, algo: str, salt: bytes, iterations: int) -> dict:
    salted = hashlib.pbkdf2_hmac(algo, secret, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", algo).digest()
    stored = hashlib.new(algo, client_key).digest()
    server = hmac.new(salted, b"Server Key", algo).digest()
    return {
        "iterationCount": iterations,
        "salt": base64.b64encode(salt).decode(),
        "storedKey": base64.b64encode(stored).decode(),
        "serverKey": base64.b64encode(server).decode(),
    }


def check_password(user_doc: dict, password: str) -> bool:
    """Given a stored user document and a candidate password, return True if it matches."""
    creds = user_doc.get("credentials", {})
    sha1 = creds.get("SCRAM-SHA-1")
    if not sha1:
        return False
    digest = hashlib.md5(f"{user_doc['user']}:mongo:{password}".encode()).hexdigest().encode()
    again = _scram(digest, "sha1", base64.b64decode(sha1["salt"]), sha1["iterationCount"])
    return hmac.compare_digest(again["storedKey"], sha1["storedKey"])


def user_document(user: str, password: str, roles: list[dict], with_sha256: bool) -> dict:
    """Given a user name, password and roles, return the admin.system.users document."""
    return {
        "_id": f"admin.{user}",
        "userId": bson.Binary(uuid.uuid4().bytes, 4),
        "user": user,
        "db": "admin",
        "credentials": scram_credentials(user, password, with_sha256),
        "roles": roles,
    }


JUJU_ROLES = [
    {"role": r, "db": "admin"}
    for r in ("clusterAdmin", "dbAdminAnyDatabase", "readWriteAnyDatabase", "userAdminAnyDatabase")
]


# --------------------------------------------------------------------------- wire protocol


class ProtocolError(Exception):
    """The peer closed or sent a malformed frame."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise ProtocolError("connection closed")
        got += k
    return bytes(buf) if n < 4096 else buf  # type: ignore[return-value]


def send_doc(sock: socket.socket, doc: dict) -> None:
    """Send one BSON frame."""
    sock.sendall(encode(doc))


def recv_doc(sock: socket.socket) -> dict | None:
    """Receive one BSON frame; return None on a clean EOF before the frame."""
    try:
        head = sock.recv(4)
    except (ConnectionResetError, ssl.SSLError):
        return None
    if not head:
        return None
    if len(head) < 4:
        head += _recv_exact(sock, 4 - len(head))
    (n,) = struct.unpack("<i", head)
    if n < 5 or n > 64 * 1024 * 1024:
        raise ProtocolError("bad frame length")
    return bson.decode_all(head + _recv_exact(sock, n - 4))[0]


def send_chunk(sock: socket.socket, data: bytes) -> None:
    """Send one raw stream chunk (empty data ends the stream)."""
    sock.sendall(struct.pack("<I", len(data)) + data)


def iter_chunks(sock: socket.socket):
    """Yield raw stream chunks until the zero-length end marker."""
    while True:
        (n,) = struct.unpack("<I", _recv_exact(sock, 4))
        if n == 0:
            return
        yield _recv_exact(sock, n)


def client_context(insecure: bool, ca_file: str | None, allow_invalid_hostnames: bool) -> ssl.SSLContext:
    """Return the client TLS context the tools use (tlsInsecure / sslAllowInvalidCertificates or CA file)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if ca_file:
            ctx.load_verify_locations(ca_file)
        else:
            ctx.load_default_certs()
        ctx.check_hostname = not allow_invalid_hostnames
    return ctx


LAB_NETS = ("127.0.0.0/8", "::1/128", "10.201.0.0/24")


def lab_address(host: str) -> bool:
    """Return True if host is an address the lab may contact (loopback, the lab bridge, localhost).

    Safety net of the stand-ins: addresses read from archives (e.g. real fixtures) are never dialled."""
    if host == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(n) for n in LAB_NETS)


def connect(
    host: str, port: int, tls: ssl.SSLContext | None, timeout: float = 5.0, server_hostname: str | None = None
) -> socket.socket:
    """Given host/port, an optional TLS context (and the name to check the server certificate against,
    default `host`), return a connected socket; raise OSError if not.

    Addresses outside the lab (see lab_address) fail like an unreachable host, without dialling."""
    if not lab_address(host):
        raise OSError(
            f"connection() error occurred during connection handshake: dial tcp {host}:{port}: "
            "connect: no route to host (lab stand-in: address outside the lab, not dialled)"
        )
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
        raise OSError(
            f"connection() error occurred during connection handshake: dial tcp {host}:{port}: connect: {why}"
        ) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        sock.settimeout(None if timeout > 60 else max(timeout, 300.0))
        # like the drivers' handshake: `isMaster` first, confirms this is a (stand-in) mongod
        send_doc(sock, {"op": "cmd", "db": "admin", "cmd": {"isMaster": 1}})
        if recv_doc(sock) is None:
            raise OSError("connection closed by server")
    except (OSError, ProtocolError, ssl.SSLError) as exc:
        sock.close()
        raise OSError(str(exc)) from exc
    return sock


def command(sock: socket.socket, db: str, cmd: dict) -> dict:
    """Run one database command on a connected socket and return the reply document."""
    send_doc(sock, {"op": "cmd", "db": db, "cmd": cmd})
    reply = recv_doc(sock)
    if reply is None:
        raise OSError("connection closed by server")
    return reply


# --------------------------------------------------------------------------- misc


def log_ts() -> str:
    """Return a mongo-tools style log timestamp."""
    return datetime.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def tool_log(msg: str) -> None:
    """Print one mongo-tools style log line on stderr."""
    sys.stderr.write(f"{log_ts()}\t{msg}\n")
    sys.stderr.flush()


def ns_match(pattern: str, ns: str) -> bool:
    """Given an --nsExclude/--nsInclude pattern (`*` wildcards) and a namespace, return True on match."""
    rx = "^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$"
    return re.match(rx, ns) is not None


def now_ts(last: bson.Timestamp | None) -> bson.Timestamp:
    """Return the next oplog timestamp (strictly increasing)."""
    t = int(time.time())
    if last is not None and last.time >= t:
        return bson.Timestamp(last.time, last.inc + 1)
    return bson.Timestamp(t, 1)
