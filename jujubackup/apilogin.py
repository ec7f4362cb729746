"""Log in to a controller's API as a machine agent, through the Host seam (the drill's login check).

Juju's API is JSON-RPC over a websocket over TLS: `GET /model/<model-uuid>/api` upgraded to a
websocket (juju/juju api/apiclient.go apiPath; apiserver/apiserver.go `/model/:modeluuid/api`),
client frames masked (RFC 6455 §5.1), then `{"request-id": 1, "type": "Admin", "version": 3,
"request": "Login", "params": {"auth-tag", "credentials", "nonce"}}` (rpc/jsoncodec/codec.go;
apiserver/admin.go login; a machine must also give its provisioning nonce) answered by
`{"request-id": 1, "response": {...}}` or `{"request-id": 1, "error": ..., "error-code": ...}`.

The connection is the same as apiprobe's: an SSH direct-tcpip channel opened on the host
(`Host.open_tcp`), TLS in memory verified against the controller CA. The credentials come from the
caller (read from an agent.conf, never from argv) and are never logged or returned.

Public API:
    login(host, address, port, ca_pem, model_uuid, tag, password, nonce, *, timeout) -> LoginResult
        raise VerifyError
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import struct
import time
from dataclasses import dataclass

from jujubackup.apiprobe import CHUNK, HANDSHAKE_TIMEOUT, _context, _flush, _step
from jujubackup.errors import ConnectError, VerifyError
from jujubackup.host.base import Host, Tunnel

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
MAX_MESSAGE = 1 << 20


@dataclass(frozen=True)
class LoginResult:
    """What a successful login answered: the model and controller tags, the server version."""

    model_tag: str
    controller_tag: str
    server_version: str


class _TLSStream:
    """A client TLS session in memory over a tunnel: send and receive application bytes."""

    def __init__(self, tunnel: Tunnel, context: ssl.SSLContext, timeout: float) -> None:
        self.tunnel = tunnel
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=None)
        self.deadline = time.monotonic() + timeout
        tunnel.settimeout(timeout)
        while not _step(self.tls, self.outgoing, tunnel):
            self._feed()

    def _feed(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError("the API did not answer in time")
        data = self.tunnel.recv(CHUNK)
        if not data:
            raise EOFError("the API closed the connection")
        self.incoming.write(data)

    def send(self, data: bytes) -> None:
        self.tls.write(data)
        _flush(self.outgoing, self.tunnel)

    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                buf += self.tls.read(n - len(buf))
            except ssl.SSLWantReadError:
                self._feed()
        return buf

    def recv_head(self) -> bytes:
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.recv_exact(1)
            if len(buf) > 65536:
                raise EOFError("the API's HTTP answer has no end")
        return buf


def login(
    host: Host,
    address: str,
    port: int,
    ca_pem: str,
    model_uuid: str,
    tag: str,
    password: str,
    nonce: str,
    *,
    timeout: float = HANDSHAKE_TIMEOUT,
) -> LoginResult:
    """Given a connected host, the API address and port as the host reaches them, the controller CA
    and an agent's model, tag, password and nonce, log in (Admin.Login v3) and return what the API
    answered. Raise VerifyError (exit 8) when the API does not answer, does not chain to the CA,
    refuses the websocket or refuses the login (the server's message, never the credentials)."""
    context = _context(ca_pem)
    try:
        tunnel = host.open_tcp(address, port, timeout=timeout)
    except ConnectError as err:
        raise VerifyError(f"the API at {address}:{port} does not answer: {err.message}") from err
    try:
        stream = _TLSStream(tunnel, context, timeout)
        _upgrade(stream, address, port, model_uuid)
        request = {
            "request-id": 1,
            "type": "Admin",
            "version": 3,
            "request": "Login",
            "params": {"auth-tag": tag, "credentials": password, "nonce": nonce},
        }
        _send_text(stream, json.dumps(request))
        reply = json.loads(_recv_text(stream))
    except ssl.SSLCertVerificationError as err:
        raise VerifyError(
            f"the API at {address}:{port} does not chain to the controller CA: {err.verify_message}"
        ) from err
    except (ssl.SSLError, OSError, EOFError, ValueError) as err:
        raise VerifyError(f"no API login at {address}:{port}: {err or type(err).__name__}") from err
    finally:
        tunnel.close()
    if not isinstance(reply, dict) or reply.get("request-id") != 1:
        raise VerifyError(f"the API at {address}:{port} answered the login with something else")
    if reply.get("error"):
        raise VerifyError(
            f"the API refused {tag}'s login: {str(reply['error'])[:200]} "
            f"({str(reply.get('error-code', ''))[:50]})"
        )
    response = reply.get("response")
    if not isinstance(response, dict):
        response = {}
    return LoginResult(
        str(response.get("model-tag", "")),
        str(response.get("controller-tag", "")),
        str(response.get("server-version", "")),
    )


def _upgrade(stream: _TLSStream, address: str, port: int, model_uuid: str) -> None:
    """Ask for the model's API websocket; raise EOFError unless the server switched protocols."""
    key = base64.b64encode(os.urandom(16)).decode()
    host = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    stream.send(
        (
            f"GET /model/{model_uuid}/api HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = stream.recv_head().decode("latin-1").split("\r\n")
    want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    if " 101 " not in f"{head[0]} " or headers.get("sec-websocket-accept") != want:
        raise EOFError(f"the API refused the websocket: {head[0][:100]}")


def _send_text(stream: _TLSStream, text: str) -> None:
    """Send one masked final text frame (RFC 6455 §5.2-5.3)."""
    data = text.encode()
    n = len(data)
    head = b"\x81" + (
        bytes([0x80 | n])
        if n < 126
        else bytes([0x80 | 126]) + struct.pack(">H", n)
        if n < 65536
        else bytes([0x80 | 127]) + struct.pack(">Q", n)
    )
    mask = os.urandom(4)
    stream.send(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _recv_text(stream: _TLSStream) -> str:
    """Return the next text message (control frames skipped, fragments joined)."""
    parts: list[bytes] = []
    while True:
        b0, b1 = stream.recv_exact(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            length = struct.unpack(">H", stream.recv_exact(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", stream.recv_exact(8))[0]
        if length > MAX_MESSAGE:
            raise EOFError("the API sent a message too big for a login answer")
        mask = stream.recv_exact(4) if b1 & 0x80 else b""
        data = stream.recv_exact(length)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        if opcode == 8:
            raise EOFError("the API closed the websocket")
        if opcode in (9, 10):
            continue
        parts.append(data)
        if b0 & 0x80:
            return b"".join(parts).decode("utf-8", "replace")
