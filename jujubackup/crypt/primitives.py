"""The age v1 format's constants, encodings (base64 without padding, Bech32) and primitives
(HKDF, X25519, the agessh Ed25519 to X25519 conversion). PURE."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jujubackup.errors import VerifyError

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
