"""age stanzas, recipients (age1…, ssh-ed25519, ssh-rsa) and identities (age identity files,
unencrypted OpenSSH private keys). PURE but load_identities, which reads
the identity file (localfiles.read_private_file)."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jujubackup.crypt.primitives import (
    _ZERO_NONCE,
    ED25519_LABEL,
    RSA_LABEL,
    X25519_LABEL,
    DecryptError,
    _hkdf,
    _ssh_fingerprint_tag,
    _ssh_string,
    _x25519,
    b64decode,
    b64encode,
    bech32_decode,
    bech32_encode,
    ed25519_to_x25519_public,
)
from jujubackup.errors import UsageError
from jujubackup.localfiles import read_private_file

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
    lines) or an unencrypted OpenSSH/PEM private key (ed25519 or rsa). Raise as
    localfiles.read_private_file does (5 missing; 6 a link, not a regular file of this user, mode
    wider than 0600: ssh refuses a group-readable key and so do we); UsageError (exit 2) for a file
    holding none or a passphrase-protected key. The file's text is never shown in a message."""
    data = read_private_file(path, "identity file")
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
