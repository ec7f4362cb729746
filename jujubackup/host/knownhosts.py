"""Read OpenSSH known_hosts files, markers included (paramiko's HostKeys.load does not know them).

paramiko splits `@revoked host ssh-ed25519 AAAA…` into names `@revoked`, key type `host` and the key
text `ssh-ed25519`, whose base64 decoding raises InvalidHostKey out of `load`: before this module,
one marker line made every connection fail with an internal error. OpenSSH (hostfile.c, sshd(8)
"SSH_KNOWN_HOSTS FILE FORMAT") reads them so:

- `@revoked PATTERNS KEY`: the key "must not ever be accepted" for a host the patterns match
  (load_hostkeys_file keeps only the lines matching the host; check_key_not_revoked then refuses an
  equal key whatever other line lists it). Here: :func:`load` drops that key from the accepted ones
  and the caller refuses it (ssh.HostKeyRevokedError, exit 3).
- `@cert-authority PATTERNS KEY`: a CA that signs host certificates. paramiko cannot verify host
  certificates, so these lines are skipped; the caller warns once (:attr:`KnownHosts.notices`).
- any other `@` marker, or a line paramiko cannot parse (an unknown key type): skipped, as ssh(1)
  skips a line it cannot read.

Host patterns match as in OpenSSH's match_hostname (match.c): comma-separated, `*`/`?` globs,
case-insensitive, `!pattern` negates (a negated match wins); hashed names (`|1|salt|hash`) are
compared by their HMAC-SHA1.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"


@dataclass(frozen=True)
class KnownHosts:
    """What known_hosts files say for one host: the keys to accept (plain lines, revoked keys
    removed), the keys revoked for it, and notices for the operator (skipped @cert-authority lines)."""

    entries: tuple[HostKeyEntry, ...]
    revoked: tuple[tuple[paramiko.PKey, Path], ...]
    notices: tuple[str, ...]

    def revoked_in(self, key: paramiko.PKey) -> Path | None:
        """Return the file that revokes `key` for this host, or None if it is not revoked."""
        return next((path for revoked, path in self.revoked if revoked == key), None)

    def install(self, keys: paramiko.HostKeys) -> None:
        """Add the accepted keys to a paramiko HostKeys: per host name and key type the first line
        wins, as with paramiko's own load (its lookup answers with the first entry)."""
        for entry in self.entries:
            for name in entry.hostnames:
                known = keys.lookup(name)
                if known is None or entry.key.get_name() not in known:
                    keys.add(name, entry.key.get_name(), entry.key)


def load(paths: Iterable[Path], host_names: Sequence[str]) -> KnownHosts:
    """Given known_hosts files (missing ones skipped) and the names the host is known by (its
    `[host]:port` key name and host name), return what they say for it. Raise OSError if a file
    exists but cannot be read."""
    entries: list[HostKeyEntry] = []
    revoked: list[tuple[paramiko.PKey, Path]] = []
    notices: list[str] = []
    for path in paths:
        if not path.is_file():
            continue
        cert_lines = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("@"):
                entry = _entry(line)
                if entry is not None:
                    entries.append(entry)
                continue
            marker, _, rest = line.partition(" ")
            if marker == CERT_AUTHORITY:
                cert_lines += 1
            elif marker == REVOKED:
                entry = _entry(rest.strip())
                if entry is not None and matches(entry.hostnames, host_names):
                    revoked.append((entry.key, path))
        if cert_lines:
            notices.append(
                f"{path}: {cert_lines} @cert-authority line{'s' if cert_lines > 1 else ''} skipped "
                "(host certificates are not supported; plain host keys are checked)"
            )
    bad = [key for key, _path in revoked]
    accepted = tuple(e for e in entries if e.key not in bad)
    return KnownHosts(accepted, tuple(revoked), tuple(notices))


def _entry(line: str) -> HostKeyEntry | None:
    """Return the HostKeyEntry of a known_hosts line without marker, or None if paramiko cannot
    read it (bad base64, unknown key type, too few fields)."""
    try:
        return HostKeyEntry.from_line(line)
    except (InvalidHostKey, paramiko.SSHException, ValueError):
        return None


def matches(patterns: Sequence[str], host_names: Sequence[str]) -> bool:
    """Return True if the known_hosts host patterns match one of `host_names` (match_hostname)."""
    return any(_matches_one(patterns, name) for name in host_names)


def _matches_one(patterns: Sequence[str], name: str) -> bool:
    name = name.lower()
    found = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        if pattern.startswith("|1|"):
            hit = hmac.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
        else:
            hit = _glob(pattern.lower()).fullmatch(name) is not None
        if hit and negate:
            return False
        found = found or hit
    return found


def _glob(pattern: str) -> re.Pattern[str]:
    """Return a regexp for an OpenSSH host pattern: only `*` and `?` are special (`[` is literal:
    `[host]:2222` is a host with a port, not a character class)."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)
