"""Encryption at rest in the age v1 format (https://age-encryption.org/v1, C2SP age spec), so any copy
can be decrypted with the standard `age` CLI: `age -d -i KEY FILE.tar.gz.age > FILE.tar.gz`.

PURE: no I/O but the streams it is given. Built on `cryptography` (already a dependency, maintained,
constant-time primitives): X25519, ChaCha20-Poly1305, HKDF-SHA256, HMAC-SHA256, RSA-OAEP. Not
pyrage: its streaming API pulls from a reader, and our copies are pushed (the controller's stream is
written into a sink, tee'd into several stores), which would need a thread and a pipe per copy; and
a native wheel more to install. The format is small and fixed; tests prove it against `age` itself.

Recipients (public, in configs and on the command line):
    age1…                 an age X25519 key (Bech32, HRP "age")
    ssh-ed25519 AAAA…     an OpenSSH Ed25519 public key (agessh: converted to X25519, tweaked)
    ssh-rsa AAAA…         an OpenSSH RSA public key (agessh: RSA-OAEP-SHA256)
Identities (secret, always read from a file, never argv): an age identity file (lines
`AGE-SECRET-KEY-1…`, `#` comments) or an unencrypted OpenSSH private key (ed25519 or rsa).

Streaming: EncryptingWriter is a sink (write/close) that writes the age file into another sink, one
64 KiB chunk at a time; DecryptingReader is a source (read) over the age file's stream. Neither keeps
more than a chunk; no plaintext ever touches a disk.

Errors: a file no identity opens, a corrupt or truncated file (the last chunk is authenticated as
last: truncation at a chunk boundary is detected too) raise DecryptError (exit 8); a bad recipient or
identity raises UsageError (exit 2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jujubackup.errors import UsageError, VerifyError

MAGIC = b"age-encryption.org/v1"
CHUNK = 64 * 1024
TAG = 16
X25519_LABEL = b"age-encryption.org/v1/X25519"
ED25519_LABEL = b"age-encryption.org/v1/ssh-ed25519"
RSA_LABEL = b"age-encryption.org/v1/ssh-rsa"
MAX_HEADER = 1 << 20  # a header is a few hundred bytes per recipient; never read unbounded input
_ZERO_NONCE = bytes(12)
_ARG = re.compile(rb"^[\x21-\x7e]+$")
_B64_CHARS = re.compile(rb"^[A-Za-z0-9+/]*$")


class DecryptError(VerifyError):
    """An encrypted copy that cannot be decrypted: no identity opens it, or it is corrupt/truncated."""


# ---------------------------------------------------------------------------------------------
# encodings


def b64encode(data: bytes) -> bytes:
    """Base64, standard alphabet, no padding (age's encoding)."""
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes) -> bytes:
    """Decode age's unpadded base64; raise ValueError for padding, bad characters or a
    non-canonical encoding (age rejects those: an encoding that is not the one we would write)."""
    if not _B64_CHARS.match(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64")
    data = base64.b64decode(text + b"=" * (-len(text) % 4))
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: Iterable[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad and bits:
        out.append((acc << (tobits - bits)) & maxv)
    elif not pad and (bits >= frombits or (acc << (tobits - bits)) & maxv):
        raise ValueError("bad bech32 padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Return Bech32 (BIP 173, not bech32m: age's) of `data` under `hrp`, lower case."""
    hrp = hrp.lower()
    values = _convert(data, 8, 5, True)
    poly = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[v] for v in values + checksum)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Return (hrp, data) of a Bech32 string (all lower or all upper case). Raise ValueError."""
    if text.lower() != text and text.upper() != text:
        raise ValueError("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise ValueError("no separator")
    hrp, rest = text[:pos], text[pos + 1:]
    if any(c not in _BECH32 for c in rest):
        raise ValueError("bad character")
    values = [_BECH32.index(c) for c in rest]
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise ValueError("bad checksum")
    return hrp, bytes(_convert(values[:-6], 5, 8, False))


def _hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


def _x25519(scalar: bytes, point: bytes) -> bytes:
    """X25519(scalar, point); raise ValueError for an all-zero result (a low-order point)."""
    return x25519.X25519PrivateKey.from_private_bytes(scalar).exchange(
        x25519.X25519PublicKey.from_public_bytes(point))


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _ssh_fingerprint_tag(wire: bytes) -> str:
    """The 4-byte tag of an SSH key in an age stanza: base64(SHA-256(wire key)[:4])."""
    return b64encode(hashlib.sha256(wire).digest()[:4]).decode()


_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P


def ed25519_to_x25519_public(pub: bytes) -> bytes:
    """Given a 32-byte Ed25519 public key, return its X25519 (Montgomery u) form: u = (1+y)/(1-y).
    Raise ValueError when the bytes are not a point of the curve."""
    y = int.from_bytes(pub, "little") & ((1 << 255) - 1)
    if y >= _P:
        raise ValueError("not an Ed25519 point")
    yy = y * y % _P
    x2 = (yy - 1) * pow(_D * yy + 1, -1, _P) % _P
    if x2 and pow(x2, (_P - 1) // 2, _P) != 1:
        raise ValueError("not an Ed25519 point")
    if y == 1:
        raise ValueError("Ed25519 identity point")
    u = (1 + y) * pow(1 - y, -1, _P) % _P
    return u.to_bytes(32, "little")


# ---------------------------------------------------------------------------------------------
# stanzas, recipients, identities


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


class Recipient(Protocol):
    @property
    def text(self) -> str:
        ...

    def wrap(self, file_key: bytes) -> Stanza:
        ...


class Identity(Protocol):
    def unwrap(self, stanza: Stanza) -> bytes | None:
        """Return the file key if this identity opens `stanza`, None when the stanza is not for it.
        Raise DecryptError when it is for it but does not open (a tampered stanza)."""
        ...


def _aead_wrap(key: bytes, file_key: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)


def _aead_unwrap(key: bytes, body: bytes) -> bytes | None:
    if len(body) != 32:
        raise DecryptError("an age stanza body is not 32 bytes")
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


@dataclass(frozen=True)
class X25519Recipient:
    text: str
    public: bytes

    def wrap(self, file_key: bytes) -> Stanza:
        ephemeral = os.urandom(32)
        share = x25519.X25519PrivateKey.from_private_bytes(ephemeral).public_key().public_bytes_raw()
        shared = _x25519(ephemeral, self.public)
        key = _hkdf(shared, share + self.public, X25519_LABEL)
        return Stanza("X25519", (b64encode(share).decode(),), _aead_wrap(key, file_key))


@dataclass(frozen=True)
class Ed25519Recipient:
    text: str
    wire: bytes
    public: bytes  # X25519 form

    def wrap(self, file_key: bytes) -> Stanza:
        ephemeral = os.urandom(32)
        share = x25519.X25519PrivateKey.from_private_bytes(ephemeral).public_key().public_bytes_raw()
        shared = _x25519(_hkdf(b"", self.wire, ED25519_LABEL), _x25519(ephemeral, self.public))
        key = _hkdf(shared, share + self.public, ED25519_LABEL)
        return Stanza("ssh-ed25519", (_ssh_fingerprint_tag(self.wire), b64encode(share).decode()),
                      _aead_wrap(key, file_key))


@dataclass(frozen=True)
class RSARecipient:
    text: str
    wire: bytes
    key: rsa.RSAPublicKey

    def wrap(self, file_key: bytes) -> Stanza:
        body = self.key.encrypt(file_key, _oaep())
        return Stanza("ssh-rsa", (_ssh_fingerprint_tag(self.wire),), body)


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=RSA_LABEL)


def parse_recipient(text: str) -> X25519Recipient | Ed25519Recipient | RSARecipient:
    """Given a recipient (age1…, `ssh-ed25519 KEY [comment]`, `ssh-rsa KEY [comment]`), return it.
    Raise UsageError (exit 2) for anything else (RSA keys under 2048 bits too)."""
    text = text.strip()
    try:
        if text.startswith("age1"):
            hrp, data = bech32_decode(text)
            if hrp != "age" or len(data) != 32:
                raise ValueError("not an age X25519 recipient")
            return X25519Recipient(text, data)
        kind, _, rest = text.partition(" ")
        blob = rest.split(" ", 1)[0]
        wire = base64.b64decode(blob, validate=True)
        key = serialization.load_ssh_public_key(f"{kind} {blob}".encode())
    except (ValueError, TypeError, UnicodeError) as err:
        raise UsageError(f"not an age recipient: {text[:60]!r} ({err})",
                         hint="give an age1… key, or an ssh-ed25519 / ssh-rsa public key line") from err
    if isinstance(key, ed25519.Ed25519PublicKey) and kind == "ssh-ed25519":
        return Ed25519Recipient(text, wire, ed25519_to_x25519_public(key.public_bytes_raw()))
    if isinstance(key, rsa.RSAPublicKey) and kind == "ssh-rsa":
        if key.key_size < 2048:
            raise UsageError(f"RSA recipient of {key.key_size} bits refused (age needs 2048 or more)")
        return RSARecipient(text, wire, key)
    raise UsageError(f"unsupported recipient key type {kind!r}",
                     hint="age recipients are age1… X25519 keys, ssh-ed25519 or ssh-rsa keys")


@dataclass(frozen=True)
class X25519Identity:
    secret: bytes

    @property
    def public(self) -> bytes:
        return x25519.X25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()

    def recipient(self) -> str:
        return bech32_encode("age", self.public)

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "X25519":
            return None
        if len(stanza.args) != 1:
            raise DecryptError("invalid X25519 stanza")
        share = _decode_arg(stanza.args[0], 32)
        try:
            shared = _x25519(self.secret, share)
        except ValueError as err:
            raise DecryptError("invalid X25519 stanza (low-order share)") from err
        return _aead_unwrap(_hkdf(shared, share + self.public, X25519_LABEL), stanza.body)


@dataclass(frozen=True)
class Ed25519Identity:
    secret: bytes  # X25519 scalar: SHA-512(seed)[:32]
    public: bytes  # X25519 form of the public key
    wire: bytes

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "ssh-ed25519":
            return None
        if len(stanza.args) != 2:
            raise DecryptError("invalid ssh-ed25519 stanza")
        if stanza.args[0] != _ssh_fingerprint_tag(self.wire):
            return None
        share = _decode_arg(stanza.args[1], 32)
        try:
            shared = _x25519(_hkdf(b"", self.wire, ED25519_LABEL), _x25519(self.secret, share))
        except ValueError as err:
            raise DecryptError("invalid ssh-ed25519 stanza (low-order share)") from err
        return _aead_unwrap(_hkdf(shared, share + self.public, ED25519_LABEL), stanza.body)


@dataclass(frozen=True)
class RSAIdentity:
    key: rsa.RSAPrivateKey
    wire: bytes

    def unwrap(self, stanza: Stanza) -> bytes | None:
        if stanza.type != "ssh-rsa":
            return None
        if len(stanza.args) != 1:
            raise DecryptError("invalid ssh-rsa stanza")
        if stanza.args[0] != _ssh_fingerprint_tag(self.wire):
            return None
        try:
            return self.key.decrypt(stanza.body, _oaep())
        except ValueError:
            return None


def _decode_arg(arg: str, length: int) -> bytes:
    try:
        data = b64decode(arg.encode())
    except ValueError as err:
        raise DecryptError("invalid age stanza argument") from err
    if len(data) != length:
        raise DecryptError("invalid age stanza argument length")
    return data


def load_identities(path: Path) -> list[X25519Identity | Ed25519Identity | RSAIdentity]:
    """Read identities from a file: an age identity file (AGE-SECRET-KEY-1… lines, # comments, blank
    lines) or an unencrypted OpenSSH/PEM private key (ed25519 or rsa). Raise UsageError (exit 2) for
    an unreadable file, a file holding none, a passphrase-protected key; NotFoundError (5) if missing.
    The file's text is never shown in a message."""
    from jujubackup.errors import NotFoundError

    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise NotFoundError(f"identity file {path} not found") from err
    except OSError as err:
        raise UsageError(f"cannot read identity file {path}: {err.strerror}") from err
    if b"PRIVATE KEY-----" in data:
        return [_ssh_identity(path, data)]
    found: list[X25519Identity | Ed25519Identity | RSAIdentity] = []
    for number, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            hrp, secret = bech32_decode(line)
        except ValueError:
            hrp, secret = "", b""
        if hrp != "age-secret-key-" or len(secret) != 32:
            raise UsageError(f"identity file {path}: line {number} is not an AGE-SECRET-KEY-1… identity",
                             hint="give an age identity file (age-keygen) or an OpenSSH private key")
        found.append(X25519Identity(secret))
    if not found:
        raise UsageError(f"identity file {path} holds no identity")
    return found


def _ssh_identity(path: Path, data: bytes) -> Ed25519Identity | RSAIdentity:
    try:
        key = serialization.load_ssh_private_key(data, password=None) if b"OPENSSH" in data else \
            serialization.load_pem_private_key(data, password=None)
    except TypeError as err:  # cryptography: "Password was not given but private key is encrypted"
        raise UsageError(f"identity file {path} is passphrase-protected",
                         hint="decrypt with `age -d -i KEY` (it asks for the passphrase), or use a "
                         "key without one kept 0600") from err
    except (ValueError, UnicodeError) as err:
        raise UsageError(f"identity file {path} is not a private key jujubackup reads") from err
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes_raw()
        wire = _ssh_string(b"ssh-ed25519") + _ssh_string(key.public_key().public_bytes_raw())
        return Ed25519Identity(hashlib.sha512(seed).digest()[:32],
                               ed25519_to_x25519_public(key.public_key().public_bytes_raw()), wire)
    if isinstance(key, rsa.RSAPrivateKey):
        blob = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH)
        return RSAIdentity(key, base64.b64decode(blob.split()[1]))
    raise UsageError(f"identity file {path}: only ed25519 and rsa SSH keys are age identities")


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
