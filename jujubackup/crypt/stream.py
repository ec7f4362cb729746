"""The age file itself: the header (read, MAC) and the streaming payload (EncryptingWriter is a
sink, DecryptingReader a source; neither keeps more than a chunk). PURE: no I/O but the streams
given (and is_age_file, which reads a file's first bytes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jujubackup.crypt.keys import (
    Identity,
    Recipient,
    Stanza,
)
from jujubackup.crypt.primitives import (
    _ARG,
    CHUNK,
    MAGIC,
    MAX_HEADER,
    TAG,
    DecryptError,
    _hkdf,
    b64decode,
    b64encode,
)
from jujubackup.errors import UsageError

# ---------------------------------------------------------------------------------------------
# header


def _header_text(stanzas: Sequence[Stanza]) -> bytes:
    """The header up to and including `---` (what the MAC covers)."""
    out = [MAGIC + b"\n"]
    for stanza in stanzas:
        out.append(b"-> " + " ".join((stanza.type, *stanza.args)).encode() + b"\n")
        body = b64encode(stanza.body)
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        if not lines or len(lines[-1]) == 64:
            lines.append(b"")
        out.extend(line + b"\n" for line in lines)
    out.append(b"---")
    return b"".join(out)


def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()


def read_header(stream: IO[bytes] | Any) -> tuple[list[Stanza], bytes, bytes]:
    """Read an age header from `stream` (left at the payload's first byte); return (stanzas, the
    header bytes the MAC covers, the MAC). Raise DecryptError for anything not an age v1 header."""
    def line() -> bytes:
        data = stream.readline(MAX_HEADER)
        if not data.endswith(b"\n"):
            raise DecryptError("not an age file, or its header is truncated",
                               hint="is it the whole `.age` file? an armored file (-a) is not supported")
        return data[:-1]

    if line() != MAGIC:
        raise DecryptError("not an age v1 file (no age-encryption.org/v1 header)")
    raw = [MAGIC + b"\n"]
    stanzas: list[Stanza] = []
    current = line()
    while current.startswith(b"-> "):
        raw.append(current + b"\n")
        parts = current[3:].split(b" ")
        if not all(_ARG.match(p) for p in parts):
            raise DecryptError("invalid age stanza line")
        body = b""
        while True:
            chunk = line()
            raw.append(chunk + b"\n")
            if len(chunk) > 64:
                raise DecryptError("invalid age stanza body line")
            body += chunk
            if len(chunk) < 64:
                break
        try:
            decoded = b64decode(body)
        except ValueError as err:
            raise DecryptError("invalid age stanza body") from err
        stanzas.append(Stanza(parts[0].decode(), tuple(p.decode() for p in parts[1:]), decoded))
        if sum(map(len, raw)) > MAX_HEADER:
            raise DecryptError("age header too large")
        current = line()
    if not current.startswith(b"--- "):
        raise DecryptError("invalid age header (no --- line)")
    raw.append(b"---")
    try:
        mac = b64decode(current[4:])
    except ValueError as err:
        raise DecryptError("invalid age header MAC") from err
    if len(mac) != 32 or not stanzas:
        raise DecryptError("invalid age header")
    return stanzas, b"".join(raw), mac


def recipients_of(stanzas: Sequence[Stanza]) -> list[str]:
    """Describe the stanzas for an error message: `X25519`, `ssh-ed25519 <tag>`, `ssh-rsa <tag>`."""
    return [s.type if s.type == "X25519" else f"{s.type} {s.args[0] if s.args else ''}".strip()
            for s in stanzas]


# ---------------------------------------------------------------------------------------------
# payload


def _nonce(counter: int, last: bool) -> bytes:
    if counter >= 1 << 88:
        raise DecryptError("age payload too long")
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class Sink(Protocol):
    def write(self, data: bytes, /) -> int | None:
        ...


@dataclass(frozen=True)
class KeyMaterial:
    """What makes an age file's bytes a function of its plaintext: the file key, the payload nonce
    and the header (stanzas and MAC). SECRET (the file key): kept only where a resumable put needs
    to produce the same ciphertext again (stores/s3.py), 0600, removed when the put ends."""

    file_key: bytes
    nonce: bytes
    header: bytes  # the whole header, `age-encryption.org/v1` to the MAC line's newline

    @classmethod
    def new(cls, recipients: Sequence[Recipient]) -> KeyMaterial:
        """Return fresh material (a random file key and nonce) wrapped to `recipients`."""
        if not recipients:
            raise UsageError("encrypting needs at least one recipient")
        file_key = os.urandom(16)
        header = _header_text([r.wrap(file_key) for r in recipients])
        mac = b64encode(_header_mac(file_key, header))
        return cls(file_key, os.urandom(16), header + b" " + mac + b"\n")

    def to_json(self) -> dict[str, str]:
        return {k: base64.b64encode(getattr(self, k)).decode() for k in ("file_key", "nonce", "header")}

    @classmethod
    def from_json(cls, data: Any) -> KeyMaterial:
        """Raise ValueError/TypeError/KeyError for anything but what to_json wrote."""
        made = cls(*(base64.b64decode(data[k], validate=True) for k in ("file_key", "nonce", "header")))
        if len(made.file_key) != 16 or len(made.nonce) != 16 or not made.header.startswith(MAGIC + b"\n"):
            raise ValueError("not age key material")
        return made


class EncryptingWriter:
    """A sink that age-encrypts what is written into `sink` (header first, then 64 KiB chunks).
    `close()` writes the last chunk; it must be called once everything is written. `plain_sha256`
    and `plain_size` are of what was written (the plaintext). `material` (KeyMaterial) makes the
    output that of an earlier writer with the same material and plaintext (a resumed upload)."""

    def __init__(self, sink: Sink, recipients: Sequence[Recipient], *,
                 material: KeyMaterial | None = None) -> None:
        material = material or KeyMaterial.new(recipients)
        self.sink = sink
        self.aead = ChaCha20Poly1305(_hkdf(material.file_key, material.nonce, b"payload"))
        self.counter = 0
        self.buffer = bytearray()
        self.hasher = hashlib.sha256()
        self.plain_size = 0
        self.closed = False
        sink.write(material.header + material.nonce)

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.plain_size += len(data)
        view = memoryview(data)
        # a chunk goes out only when more follows: the last one is sealed with the last flag
        if self.buffer:
            need = CHUNK - len(self.buffer)
            self.buffer += view[:need]
            view = view[need:]
            if not view:
                return len(data)
            self._seal(bytes(self.buffer), last=False)
            self.buffer.clear()
        while len(view) > CHUNK:  # whole chunks straight from the caller's buffer, no copy
            self._seal(view[:CHUNK], last=False)
            view = view[CHUNK:]
        self.buffer += view
        return len(data)

    def _seal(self, chunk: bytes | memoryview, *, last: bool) -> None:
        self.sink.write(self.aead.encrypt(_nonce(self.counter, last), chunk, None))
        self.counter += 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._seal(bytes(self.buffer), last=True)
            self.buffer.clear()

    @property
    def plain_sha256(self) -> str:
        return self.hasher.hexdigest()


class DecryptingReader:
    """A source reading the plaintext of the age file `raw` (a binary stream at its first byte),
    opened with one of `identities`. Raise DecryptError (exit 8) when none opens it (on creation),
    or on a corrupt or truncated payload (when read; nothing wrong is ever returned: each chunk is
    authenticated before it is returned, the last one as last)."""

    def __init__(self, raw: IO[bytes] | Any, identities: Sequence[Identity], *, label: str = "") -> None:
        self.raw = raw
        self.label = label or "the encrypted copy"
        stanzas, header, mac = read_header(raw)
        file_key = self._unwrap(stanzas, identities)
        if not hmac.compare_digest(_header_mac(file_key, header), mac):
            raise DecryptError(f"{self.label}: the age header's MAC does not match (tampered header)")
        nonce = _read_exact(raw, 16)
        if len(nonce) != 16:
            raise DecryptError(f"{self.label} is truncated (no payload)")
        self.aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self.counter = 0
        self.pending = b""
        self.pos = 0  # how much of `pending` was returned
        self.ahead = _read_exact(raw, CHUNK + TAG)
        self.done = False

    def _unwrap(self, stanzas: Sequence[Stanza], identities: Sequence[Identity]) -> bytes:
        for stanza in stanzas:
            for identity in identities:
                key = identity.unwrap(stanza)
                if key is not None:
                    if len(key) != 16:
                        raise DecryptError(f"{self.label}: invalid file key")
                    return key
        raise DecryptError(
            f"no identity given opens {self.label} (encrypted to: {', '.join(recipients_of(stanzas))})",
            hint="give --identity FILE with the private key of one of its recipients",
        )

    def _next_chunk(self) -> bytes:
        if self.done:
            return b""
        sealed = self.ahead
        if len(sealed) == CHUNK + TAG:
            self.ahead = _read_exact(self.raw, CHUNK + TAG)
            last = not self.ahead
        else:
            self.ahead = b""
            last = True
        if len(sealed) < TAG or (last and len(sealed) == TAG and self.counter > 0):
            raise DecryptError(f"{self.label} is truncated or corrupt (age payload ends early)",
                               hint="the copy is damaged: use another copy; nothing was changed")
        try:
            plain = self.aead.decrypt(_nonce(self.counter, last), sealed, None)
        except InvalidTag as err:
            raise DecryptError(f"{self.label} is truncated or corrupt (age chunk {self.counter} fails "
                               "authentication)", hint="the copy is damaged: use another copy; nothing "
                               "was changed") from err
        self.counter += 1
        self.done = last
        return plain

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = 1 << 62
        parts = []
        want = size
        while want:
            if self.pos == len(self.pending):
                if self.done:
                    break
                self.pending, self.pos = self._next_chunk(), 0
                continue
            part = self.pending[self.pos:self.pos + want]
            self.pos += len(part)
            want -= len(part)
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> DecryptingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(raw: IO[bytes] | Any, size: int) -> bytes:
    """Read up to `size` bytes, fewer only at the end of the stream (a pipe returns short reads)."""
    parts = []
    while size:
        data = raw.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def is_age_file(path: Path) -> bool:
    """True when the file starts with the age v1 header line (or is named *.age)."""
    if path.name.endswith(".age"):
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(len(MAGIC) + 1) == MAGIC + b"\n"
    except OSError:
        return False
