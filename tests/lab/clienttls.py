"""The TLS flags a test or a benchmark gives a mongo tool on a lab host (test code, never shipped):
the product's own choice (jujubackup.profiles.MongoTls) for the host's juju-db generation and ca.crt."""

from __future__ import annotations

from pathlib import Path

from jujubackup.profiles import CA_FILE, MongoTls
from tests.lab import provision


def mongo_tls(profile: str, root: Path) -> MongoTls:
    """Given a lab profile and a host's root dir, return the flags of its tools and shell."""
    gen = provision.PROFILES[profile].generation
    return MongoTls.choose(gen.tools, gen.server, (root / CA_FILE.lstrip("/")).exists())
