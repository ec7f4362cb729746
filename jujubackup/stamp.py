"""The "already verified" stamp in a local archive's sidecar: an HMAC only this operator can make.

`verify FILE` records in the archive's `<ID>.json` sidecar that a full verification passed, so
`upload` and `restore --archive` can skip a second pass. The sidecar is a plain file next to the
archive: anyone who can write there could forge "checks": "full". So the stamp is an HMAC-SHA256,
keyed with a secret kept in the operator's own config dir, over the whole sidecar (record, SHA-256,
and the archive's identity: size, mtime_ns, inode). A missing, forged or stale stamp (another key,
another file, the file changed) means a full verification, never a skipped one.

Key: $XDG_CONFIG_HOME/jujubackup/stamp.key (default ~/.config/jujubackup/stamp.key), 32 random
bytes as hex, created 0600 (its dir 0700) on first use. A key file that is a link, not ours or
readable by others is not used (no stamp is trusted or written).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jujubackup.errors import JujuBackupError, NotFoundError
from jujubackup.localfiles import read_private_file

KEY_FILE = "stamp.key"
KEY_HEX_LEN = 64


def key_path(env: Mapping[str, str] | None = None) -> Path:
    """Return where the stamp key lives: $XDG_CONFIG_HOME/jujubackup/stamp.key, else under ~/.config."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "jujubackup" / KEY_FILE


def load_key(*, create: bool, env: Mapping[str, str] | None = None) -> bytes | None:
    """Return the operator's stamp key; with `create`, make it first if there is none. Return None
    when there is none (and not `create`), it cannot be made, or the file is not trustworthy: a
    link, not a regular file, not owned by this user, readable or writable by others, malformed."""
    path = key_path(env)
    try:
        text = read_private_file(path, "stamp key", limit=4096).strip()
    except NotFoundError:
        return _create_key(path) if create else None
    except JujuBackupError:  # not trustworthy: no stamp is ever taken as valid, nothing else breaks
        return None
    if len(text) != KEY_HEX_LEN:
        return None
    try:
        return bytes.fromhex(text.decode("ascii"))
    except ValueError:
        return None


def _create_key(path: Path) -> bytes | None:
    """Write a new random key at `path` (0600, dir 0700) without replacing one made meanwhile
    (written to a temp file, then hard-linked into place); return the key in force, or None."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{KEY_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(KEY_HEX_LEN // 2) + "\n")
            with contextlib.suppress(FileExistsError):  # another run made one first: use that
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    except OSError:
        return None
    return load_key(create=False, env={"XDG_CONFIG_HOME": str(path.parent.parent)})


def sign(key: bytes, data: Mapping[str, Any]) -> str:
    """Given the key and a sidecar (without its stamp), return the stamp: HMAC-SHA256 hex over the
    sidecar's canonical JSON (sorted keys, no spaces, ASCII)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, text.encode("ascii"), hashlib.sha256).hexdigest()


def is_genuine(key: bytes, data: Mapping[str, Any], stamp: Any) -> bool:
    """Return True if `stamp` is this key's stamp of `data` (constant-time comparison)."""
    return isinstance(stamp, str) and hmac.compare_digest(sign(key, data), stamp)
