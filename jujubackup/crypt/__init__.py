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

The package by concern: primitives.py (constants, encodings, HKDF/X25519), keys.py (stanzas,
recipients, identities), stream.py (the header and the streaming payload); every public name is
importable from jujubackup.crypt.
"""

from __future__ import annotations

from jujubackup.crypt.keys import (
    Ed25519Identity,
    Ed25519Recipient,
    Identity,
    Recipient,
    RSAIdentity,
    RSARecipient,
    Stanza,
    X25519Identity,
    X25519Recipient,
    load_identities,
    parse_recipient,
)
from jujubackup.crypt.primitives import (
    CHUNK,
    ED25519_LABEL,
    MAGIC,
    MAX_HEADER,
    RSA_LABEL,
    TAG,
    X25519_LABEL,
    DecryptError,
    b64decode,
    b64encode,
    bech32_decode,
    bech32_encode,
    ed25519_to_x25519_public,
)
from jujubackup.crypt.stream import (
    DecryptingReader,
    EncryptingWriter,
    KeyMaterial,
    Sink,
    is_age_file,
    read_header,
    recipients_of,
)

__all__ = [
    "CHUNK",
    "ED25519_LABEL",
    "MAGIC",
    "MAX_HEADER",
    "RSA_LABEL",
    "TAG",
    "X25519_LABEL",
    "DecryptError",
    "DecryptingReader",
    "Ed25519Identity",
    "Ed25519Recipient",
    "EncryptingWriter",
    "Identity",
    "KeyMaterial",
    "RSAIdentity",
    "RSARecipient",
    "Recipient",
    "Sink",
    "Stanza",
    "X25519Identity",
    "X25519Recipient",
    "b64decode",
    "b64encode",
    "bech32_decode",
    "bech32_encode",
    "ed25519_to_x25519_public",
    "is_age_file",
    "load_identities",
    "parse_recipient",
    "read_header",
    "recipients_of",
]
