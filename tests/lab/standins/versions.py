"""The MongoDB generations Juju ships, as the stand-ins imitate them (test code, never shipped).

One row per juju-db generation: the server, tools and shell versions and the option names each of them
knows. A stand-in executable is installed with its generation key ("3.2", "3.6", "4.0", "4.4", "4.4.30")
and takes everything version-dependent from here; `family` keeps the older code paths of the stand-ins
("3.2": pre-4.x semantics, "4.4": the 4.4 snap) where only two behaviours are modelled.

Sources (every row):
- server versions: Juju 2.8 xenial deb juju-mongodb3.2 3.2.22 (J28 packaging/dependency/mongo.go);
  bionic distro mongodb-server-core 3.6.3 (Ubuntu bionic archive, J28 mongo/mongo.go installs it);
  the juju-db 4.0/stable snap 4.0.9 (juju/juju#10111 QA output); 4.4/stable 4.4.18 (J29);
  4.4.30/stable (juju/juju scripts/set-juju-db-snap-channel.bash `channel="4.4.30/stable"`).
- tools options: mongodb/mongo-tools common/options/options.go at r3.2.22, r3.6.3, r4.0.9, 100.6.1:
  `long:"tlsInsecure"` exists only in 100.x here (r3.6.21+/r4.0.21+ have it, not r3.6.3 nor r4.0.9);
  `long:"uri"` from r3.6; `long:"config"` only in 100.x (100.3.0+).
- shell options: the --tls* aliases of the shell and of mongod arrived with MongoDB 4.2 (4.2 release
  notes, "TLS options"); 3.2/3.6/4.0 know only --ssl*.
- mutual TLS: mongod with net.tls.CAFile and without allowConnectionsWithoutCertificates requires a
  client certificate signed by that CA (MongoDB 4.4 manual, "net.tls.CAFile" /
  "allowConnectionsWithoutCertificates"); Juju's 4.4.30 controllers run it that way (juju/juju#22455:
  juju-db.mongodump without --sslPEMKeyFile fails with "connection handshake ... EOF").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Generation:
    """One juju-db generation: versions and option sets of mongod, the tools and the shell."""

    key: str
    family: str
    """"3.2" or "4.4": which of the two modelled behaviours the rest of the stand-ins follow."""
    server: str
    """mongod's and the shell's version (`db version v<server>`)."""
    tools: str
    """The tools' `--version` string (`mongodump version: <tools>`)."""
    tools_tls_insecure: bool
    """The tools know --tlsInsecure (mongo-tools 100.x, r3.6.21+, r4.0.21+)."""
    tools_uri: bool
    """The tools know --uri (r3.6+)."""
    tools_config: bool
    """The tools know --config (100.3.0+)."""
    tls_aliases: bool
    """The shell and mongod know the --tls* options (MongoDB 4.2+)."""
    bind_ip_all: bool
    """mongod knows --bind_ip_all (3.6+) and binds localhost only by default."""
    client_cert_required: bool
    """juju-db's mongod requires a client certificate chaining to its CA (Juju's 4.4.30 setup)."""


GENERATIONS: dict[str, Generation] = {
    g.key: g
    for g in (
        Generation("3.2", "3.2", "3.2.22", "r3.2.22", False, False, False, False, False, False),
        Generation("3.6", "3.2", "3.6.3", "r3.6.3", False, True, False, False, True, False),
        Generation("4.0", "3.2", "4.0.9", "r4.0.9", False, True, False, False, True, False),
        Generation("4.4", "4.4", "4.4.18", "100.6.1", True, True, True, True, True, False),
        # The tools version of the 4.4.30 snap is not named in Juju's source: any 100.x has the same
        # options (checked 100.6.1 and 100.9.4 common/options/options.go).
        Generation("4.4.30", "4.4", "4.4.30", "100.9.4", True, True, True, True, True, True),
    )
}


def generation(key: str) -> Generation:
    """Given a generation key ("3.2", "3.6", "4.0", "4.4", "4.4.30"), return it. Raise KeyError if unknown."""
    return GENERATIONS[key]


def family(key: str) -> str:
    """Given a generation key, return its family ("3.2" or "4.4"); a family key is its own family."""
    return GENERATIONS[key].family
