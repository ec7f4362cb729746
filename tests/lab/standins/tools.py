"""Stand-ins for the MongoDB client tools: `mongodump` / `mongorestore` (mongo-tools 100.x shipped with
the juju-db 4.4 snap as juju-db.mongodump etc., and the legacy 3.2 tools of juju-mongodb3.2) and the
legacy `mongo` shell (4.4 / 3.2).  Test code, never shipped.

Held to the real tools' contract as jujubackup uses them: option names (unknown options fail with
`error parsing command line options: unknown option "x"`, exit 3; 3.2 tools reject --tls*), password
from a non-TTY stdin when --username is given without --password, "Failed: ..." + exit 1 on wrong
credentials or when no server is reachable ("no reachable servers"), mongodump's on-disk layout
(<db>/<coll>.bson, <coll>.metadata.json, oplog.bson; .gz with --gzip).  The shell runs only
`db.getSiblingDB(..).auth(..)`, `print(JSON.stringify(<command>))`, `printjson(<command>)`, bare
`<command>` and `quit()`, where <command> is `db.adminCommand(<JSON>)`, `db.runCommand(<JSON>)` or
`db.getSiblingDB("<db>").runCommand(<JSON>)`; anything else fails like a JS error.
"""

from __future__ import annotations

import getpass
import gzip
import json
import os
import re
import ssl
import sys
import time
from typing import Any

from . import common, oplogreplay
from .versions import Generation, generation

EXIT_FAILURE = 1
EXIT_BAD_OPTIONS = 3


class ToolError(Exception):
    """A failure the tool reports as `Failed: ...`."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- option parsing

CONN_OPTS = {
    "host": True,
    "h": "host",
    "port": True,
    "username": True,
    "u": "username",
    "password": True,
    "p": "password",
    "authenticationDatabase": True,
    "authenticationMechanism": True,
    "ssl": False,
    "sslCAFile": True,
    "sslPEMKeyFile": True,
    "sslPEMKeyPassword": True,
    "sslCRLFile": True,
    "sslAllowInvalidCertificates": False,
    "sslAllowInvalidHostnames": False,
    "sslFIPSMode": False,
    "help": False,
    "version": False,
    "verbose": False,
    "v": "verbose",
    "quiet": False,
}
TLS_OPTS = {
    "tls": False,
    "tlsInsecure": False,
    "tlsCAFile": True,
    "tlsCertificateKeyFile": True,
    "tlsCertificateKeyFilePassword": True,
    "tlsAllowInvalidCertificates": False,
    "tlsAllowInvalidHostnames": False,
}
DUMP_OPTS = {
    "db": True,
    "d": "db",
    "collection": True,
    "c": "collection",
    "query": True,
    "q": "query",
    "queryFile": True,
    "readPreference": True,
    "forceTableScan": False,
    "out": True,
    "o": "out",
    "gzip": False,
    "oplog": False,
    "archive": True,
    "dumpDbUsersAndRoles": False,
    "excludeCollection": "*",
    "excludeCollectionsWithPrefix": "*",
    "numParallelCollections": True,
    "j": "numParallelCollections",
    "nsExclude": "*",
    "repair": False,
}
RESTORE_OPTS = {
    "db": True,
    "d": "db",
    "collection": True,
    "c": "collection",
    "nsExclude": "*",
    "nsInclude": "*",
    "objcheck": False,
    "oplogReplay": False,
    "oplogLimit": True,
    "oplogFile": True,
    "archive": True,
    "restoreDbUsersAndRoles": False,
    "dir": True,
    "gzip": False,
    "drop": False,
    "dryRun": False,
    "writeConcern": True,
    "noIndexRestore": False,
    "noOptionsRestore": False,
    "keepIndexVersion": False,
    "maintainInsertionOrder": False,
    "numParallelCollections": True,
    "j": "numParallelCollections",
    "numInsertionWorkersPerCollection": True,
    "stopOnError": False,
    "bypassDocumentValidation": False,
    "batchSize": True,
    "preserveUUID": False,
}
SHELL_OPTS = {
    "shell": False,
    "nodb": False,
    "norc": False,
    "eval": "*",
    "ipv6": False,
    "disableImplicitSessions": False,
    "retryWrites": False,
}
SHELL_TLS_OPTS = {
    "tls": False,
    "tlsCAFile": True,
    "tlsCertificateKeyFile": True,
    "tlsCertificateKeyFilePassword": True,
    "tlsAllowInvalidCertificates": False,
    "tlsAllowInvalidHostnames": False,
    "tlsInsecure": False,
}


def parse_options(argv: list[str], spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Given argv and an option spec (name -> takes value/alias/"*" repeatable), return (opts, positionals).

    Raise ToolError(exit 3) with the go-flags message for an unknown option or a missing value."""
    opts: dict[str, Any] = {}
    pos: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            pos += argv[i + 1 :]
            break
        if not arg.startswith("-") or arg == "-":
            pos.append(arg)
            i += 1
            continue
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
        else:
            name, value = arg[1:2], arg[2:]
            eq = "=" if value else ""
            if name == "v" and value and set(value) == {"v"}:
                value, eq = "", ""
        kind = spec.get(name)
        if kind is None:
            raise ToolError(f'error parsing command line options: unknown option "{name}"', EXIT_BAD_OPTIONS)
        if isinstance(kind, str) and kind != "*":
            name, kind = kind, spec[kind]
        if kind is False:
            if eq and name != "verbose" and value.lower() not in ("true", "false", ""):
                raise ToolError(
                    f"error parsing command line options: bool flag `--{name}' cannot have an argument",
                    EXIT_BAD_OPTIONS,
                )
            opts[name] = not (eq and value.lower() == "false")
        else:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise ToolError(
                        f"error parsing command line options: expected argument for flag `--{name}'",
                        EXIT_BAD_OPTIONS,
                    )
                value = argv[i]
            if kind == "*":
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value
        i += 1
    return opts, pos


# --------------------------------------------------------------------------- connecting


class Session:
    """An authenticated connection of a tool to the stand-in mongod."""

    def __init__(self, opts: dict[str, Any], series: str, flavor: str) -> None:
        self.series = series
        self.flavor = flavor  # "tools" or "shell"
        host = opts.get("host", "localhost")
        if "/" in host:  # setName/host1:port,host2:port
            host = host.split("/", 1)[1]
        host = host.split(",")[0]
        port = opts.get("port")
        if host.startswith("[") or host.count(":") > 1:
            self.host = host.strip("[]")
        elif ":" in host:
            host, _, p = host.partition(":")
            port = port or p
            self.host = host
        else:
            self.host = host
        tls_name = self.host  # the name the server certificate is checked against
        if self.host == "localhost":
            self.host = "127.0.0.1"
        self.port = int(port or 27017)
        use_tls = opts.get("ssl") or opts.get("tls")
        ctx = None
        if use_tls:
            insecure = bool(
                opts.get("sslAllowInvalidCertificates")
                or opts.get("tlsInsecure")
                or opts.get("tlsAllowInvalidCertificates")
            )
            ctx = common.client_context(
                insecure,
                opts.get("sslCAFile") or opts.get("tlsCAFile"),
                bool(opts.get("sslAllowInvalidHostnames") or opts.get("tlsAllowInvalidHostnames")),
            )
            # the client certificate (--sslPEMKeyFile / --tlsCertificateKeyFile): what a server with a
            # CA file demands (Juju 4.4.30; mongo-tools options.go maps both onto the driver's
            # tlsCertificateKeyFile); an unreadable file fails before connecting, as the tools do
            pem = opts.get("sslPEMKeyFile") or opts.get("tlsCertificateKeyFile")
            if pem:
                try:
                    ctx.load_cert_chain(pem)
                except (OSError, ssl.SSLError) as exc:
                    raise ToolError(f"error opening PEM file {pem}: {exc}") from exc
        try:
            self.sock = common.connect(self.host, self.port, ctx, server_hostname=tls_name)
        except OSError as exc:
            raise ToolError(self._unreachable(str(exc))) from exc

    def _unreachable(self, why: str) -> str:
        if self.series == "3.2":
            return "error connecting to db server: no reachable servers"
        return (
            f"can't create session: could not connect to server: server selection error: no reachable "
            f"servers, current topology: {{ Type: Single, Servers: [{{ Addr: {self.host}:{self.port}, "
            f"Type: Unknown, Last error: {why} }}, ] }}"
        )

    def authenticate(self, user: str, password: str, auth_db: str, mechanism: str | None) -> None:
        """Authenticate; raise ToolError with the real tool's message on failure."""
        reply = common.command(
            self.sock,
            auth_db,
            {"authenticate": 1, "user": user, "pwd": password, "mechanism": mechanism or "SCRAM-SHA-1"},
        )
        if not reply.get("ok"):
            if self.series == "3.2":
                raise ToolError(
                    "error connecting to db server: server returned error on SASL authentication "
                    "step: Authentication failed."
                )
            raise ToolError(
                "can't create session: could not connect to server: connection() error occurred "
                "during connection handshake: auth error: sasl conversation error: unable to "
                f'authenticate using mechanism "{mechanism or "SCRAM-SHA-1"}": '
                "(AuthenticationFailed) Authentication failed."
            )

    def command(self, db: str, cmd: dict) -> dict:
        """Run a command; return the reply."""
        try:
            return common.command(self.sock, db, cmd)
        except (OSError, common.ProtocolError) as exc:
            raise ToolError(f"connection to {self.host}:{self.port} lost: {exc}") from exc

    def checked(self, db: str, cmd: dict, what: str) -> dict:
        """Run a command; raise ToolError if it failed."""
        reply = self.command(db, cmd)
        if not reply.get("ok"):
            raise ToolError(f"{what}: {reply.get('errmsg')}")
        return reply


def read_password(opts: dict[str, Any]) -> str:
    """Return the password: --password, 100.x --config YAML `password:`, else one line from stdin."""
    if opts.get("password") is not None:
        return opts["password"]
    if opts.get("config_password") is not None:
        return opts["config_password"]
    if sys.stdin.isatty():
        return getpass.getpass("Enter password:")
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def read_tools_config(path: str) -> dict[str, Any]:
    """Given a mongo-tools 100.x --config YAML file, return its settings (password, uri)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ToolError(f"error opening file with --config: {exc.strerror}", EXIT_BAD_OPTIONS) from exc
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            continue
        key, value = key.strip(), value.strip()
        if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        if key not in ("password", "uri", "sslPEMKeyPassword"):
            raise ToolError(f"error parsing config file: unrecognized key '{key}'", EXIT_BAD_OPTIONS)
        out[key] = value
    return out


def open_session(opts: dict[str, Any], series: str) -> Session:
    """Connect and authenticate as the options say; raise ToolError."""
    session = Session(opts, series, "tools")
    if opts.get("username"):
        password = read_password(opts)
        session.authenticate(
            opts["username"],
            password,
            opts.get("authenticationDatabase") or opts.get("db") or "admin",
            opts.get("authenticationMechanism"),
        )
    return session


def tool_spec(base: dict[str, Any], gen: Generation) -> dict[str, Any]:
    """Return the full option spec for a tool of this generation (versions.py names the tags read):
    of the --tls* options only --tlsInsecure exists, and only from 100.x (r3.6.21/r4.0.21) on."""
    spec = dict(CONN_OPTS)
    spec.update(base)
    if gen.tools_tls_insecure:
        spec["tlsInsecure"] = False
    if gen.tools_config:
        spec["config"] = True
    return spec


# Options the team brief makes the stand-ins accept although the real tool has no such option
# (mongo-tools common/options: 100.x has --ssl* and --tlsInsecure only; mongodump never had --nsExclude;
# mongorestore got --nsInclude/--nsExclude in 3.4).  Refused exactly as the real tool refuses an unknown
# option: `error parsing command line options: unknown option "x"`, exit 3.
NOT_REAL_OPTIONS = {
    ("mongodump", "4.4"): {"nsExclude", *(set(TLS_OPTS) - {"tlsInsecure"})},
    ("mongorestore", "4.4"): set(TLS_OPTS) - {"tlsInsecure"},
    ("mongodump", "3.2"): {"nsExclude"},
    ("mongorestore", "3.2"): {"nsExclude", "nsInclude"},
}


def run_tool(name: str, key: str, argv: list[str], body: Any) -> int:
    """Given the tool's name, its generation key (versions.py), argv and body: parse the options as that
    version does, run the body, map errors to the real tools' output and exit codes."""
    gen = generation(key)
    series = gen.family
    try:
        opts, pos = parse_options(argv, tool_spec(DUMP_OPTS if name == "mongodump" else RESTORE_OPTS, gen))
        for opt in sorted(NOT_REAL_OPTIONS[(name, series)] & set(opts)):
            raise ToolError(f'error parsing command line options: unknown option "{opt}"', EXIT_BAD_OPTIONS)
        if opts.get("help"):
            print(f"Usage:\n  {name} <options> <connection-string>")
            return 0
        if opts.get("version"):
            # mongo-tools common/options/options.go PrintVersion: "%v version: %v" (all tags read)
            print(f"{name} version: {gen.tools}")
            return 0
        if opts.get("config"):
            cfg = read_tools_config(opts["config"])
            opts["config_password"] = cfg.get("password")
        return body(opts, pos, series)
    except ToolError as exc:
        if exc.code == EXIT_BAD_OPTIONS:
            common.tool_log(str(exc))
            common.tool_log(f"try '{name} --help' for more information")
        else:
            common.tool_log(f"Failed: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 4
    except OSError as exc:
        # a path the tool may not use (snap confinement, standins/confinement.py) or that is not there:
        # the Go tools report the os.PathError, `Failed: ...: open <path>: permission denied`
        # (mongo-tools mongodump/prepare.go, mongorestore/filepath.go wrap it the same way)
        what = "error dumping" if name == "mongodump" else "error scanning filesystem"
        common.tool_log(f"Failed: {what}: open {exc.filename}: {(exc.strerror or str(exc)).lower()}")
        return EXIT_FAILURE


# --------------------------------------------------------------------------- mongodump


def _metadata_json(meta: dict, db: str, coll: str, series: str) -> str:
    if series == "3.2":
        return json.dumps(
            {
                "options": meta.get("options", {}),
                "indexes": [
                    {
                        "v": 1,
                        "key": i.get("key", {"_id": 1}),
                        "name": i.get("name", "_id_"),
                        "ns": f"{db}.{coll}",
                    }
                    for i in meta.get("indexes", [])
                ],
            },
            separators=(",", ":"),
        )

    def canon(v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return {"$numberInt": str(v)}
        if isinstance(v, dict):
            return {k: canon(x) for k, x in v.items()}
        if isinstance(v, list):
            return [canon(x) for x in v]
        return v

    return json.dumps(
        {
            "indexes": canon([{k: v for k, v in i.items() if k != "ns"} for i in meta.get("indexes", [])]),
            "uuid": meta.get("uuid", ""),
            "collectionName": coll,
            "type": "collection",
        },
        separators=(",", ":"),
    )


def _open_out(path: str, gz: bool) -> Any:
    return gzip.open(path + ".gz", "wb", compresslevel=1) if gz else open(path, "wb")


def _stream_to(session: Session, req: dict, path: str, gz: bool) -> tuple[int, dict]:
    common.send_doc(session.sock, req)
    head = common.recv_doc(session.sock)
    if head is None:
        raise ToolError("connection closed by server")
    if not head.get("ok"):
        raise ToolError(str(head.get("errmsg")))
    counter = common.DocCounter()
    with _open_out(path, gz) as out:
        for chunk in common.iter_chunks(session.sock):
            counter.feed(chunk)
            out.write(chunk)
    return counter.count, json.loads(head.get("metadata") or "{}")


HOLD_GATE = "/etc/jujubackup-lab-hold-mongodump"
"""Test-only gate (not a real mongodump behaviour): while this file exists on the host, a started
mongodump waits after connecting, so tests can act on a dump that is certainly in progress."""


def hold_while_gated() -> None:
    """Wait while the lab's hold gate exists (see HOLD_GATE)."""
    while os.path.exists(HOLD_GATE):
        time.sleep(0.05)


OPLOG_GATE = "/etc/jujubackup-lab-hold-mongodump-oplog"
"""Test-only gate (not a real mongodump behaviour): while this file exists, a mongodump --oplog waits
after the collections, before it reads the oplog, having created OPLOG_GATE_REACHED in the directory
holding its --out dir (a snap's mongodump may write only there): writes made meanwhile are in the
dump's oplog.bson and not in its collection files (a write during the dump)."""
OPLOG_GATE_REACHED = ".jujubackup-lab-oplog-gate-reached"
RESTORE_OPLOG_GATE = "/etc/jujubackup-lab-hold-mongorestore-oplog"
"""Test-only gate (not a real mongorestore behaviour): while this file exists, a mongorestore
--oplogReplay waits after the collections, before it replays the oplog (a restore step caught there)."""


def hold_at_oplog(out_dir: str) -> None:
    """Wait at OPLOG_GATE while it exists (see there)."""
    if os.path.exists(OPLOG_GATE):
        marker = os.path.join(os.path.dirname(os.path.abspath(out_dir)), OPLOG_GATE_REACHED)
        with open(marker, "w"):
            pass
    while os.path.exists(OPLOG_GATE):
        time.sleep(0.05)


def mongodump_body(opts: dict[str, Any], pos: list[str], series: str) -> int:
    """mongodump: dump all (or --db/--collection) collections to --out, with --oplog."""
    if pos:
        if series == "3.2":
            raise ToolError(
                f"error parsing positional arguments: unexpected argument: {pos[0]}", EXIT_BAD_OPTIONS
            )
        raise ToolError(
            "error parsing positional arguments: provide only one MongoDB connection string", EXIT_BAD_OPTIONS
        )
    if opts.get("oplog") and opts.get("db"):
        raise ToolError("bad option: --oplog mode only supported on full dumps", EXIT_BAD_OPTIONS)
    if opts.get("collection") and not opts.get("db"):
        raise ToolError("bad option: cannot dump a collection without a specified database", EXIT_BAD_OPTIONS)
    if opts.get("archive"):
        raise ToolError("--archive is not supported by the lab stand-in")
    out_dir = opts.get("out", "dump")
    gz = bool(opts.get("gzip"))
    session = open_session(opts, series)
    hold_while_gated()
    oplog_start = None
    if opts.get("oplog"):
        reply = session.command("admin", {"replSetGetStatus": 1})
        start = _oplog_pos(session)
        if start is None or not reply.get("ok"):
            raise ToolError("error getting oplog start: not found")
        oplog_start = start
    if opts.get("db"):
        dbs = [opts["db"]]
    else:
        dbs = [
            d["name"]
            for d in session.checked("admin", {"listDatabases": 1}, "error listing databases")["databases"]
            if d["name"] not in ("local", "config")
        ]
    excludes = opts.get("nsExclude", [])
    for db in dbs:
        colls = [
            c["name"]
            for c in session.checked(db, {"listCollections": 1}, "error listing collections")["cursor"][
                "firstBatch"
            ]
        ]
        for coll in colls:
            if opts.get("collection") and coll != opts["collection"]:
                continue
            if coll.startswith("system.") and not (
                db == "admin" and coll in ("system.users", "system.version", "system.roles")
            ):
                continue
            if coll in opts.get("excludeCollection", []) or any(
                coll.startswith(p) for p in opts.get("excludeCollectionsWithPrefix", [])
            ):
                continue
            if any(common.ns_match(p, f"{db}.{coll}") for p in excludes):
                continue
            os.makedirs(os.path.join(out_dir, db), exist_ok=True)
            path = os.path.join(out_dir, db, coll + ".bson")
            common.tool_log(f"writing {db}.{coll} to {path}{'.gz' if gz else ''}")
            n, meta = _stream_to(session, {"op": "dump", "db": db, "coll": coll}, path, gz)
            with _open_out(os.path.join(out_dir, db, coll + ".metadata.json"), gz) as f:
                f.write(_metadata_json(meta, db, coll, series).encode())
            common.tool_log(f"done dumping {db}.{coll} ({n} document{'s' if n != 1 else ''})")
    if oplog_start is not None:
        hold_at_oplog(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, "oplog.bson")
        common.tool_log(f"writing captured oplog to {path}{'.gz' if gz else ''}")
        n, _ = _stream_to(session, {"op": "oplogRead", "from": oplog_start}, path, gz)
        common.tool_log(f"\tdumped {n} oplog entr{'ies' if n != 1 else 'y'}")
    return 0


def _oplog_pos(session: Session) -> int | None:
    common.send_doc(session.sock, {"op": "oplogPos"})
    reply = common.recv_doc(session.sock)
    if not reply or not reply.get("ok"):
        return None
    return int(reply["pos"])


# --------------------------------------------------------------------------- mongorestore


def _read_maybe_gz(path: str, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _find_restore_targets(
    root: str, opts: dict[str, Any], gz: bool
) -> list[tuple[str, str, str, str | None]]:
    suffix = ".bson.gz" if gz else ".bson"
    targets = []
    if opts.get("db"):
        layout = [(opts["db"], root)]
    else:
        layout = [
            (d, os.path.join(root, d))
            for d in sorted(os.listdir(root))
            if os.path.isdir(os.path.join(root, d))
        ]
    for db, d in layout:
        for f in sorted(os.listdir(d)):
            if not f.endswith(suffix) or f.endswith(".metadata.json" + (".gz" if gz else "")):
                continue
            coll = f[: -len(suffix)]
            if opts.get("collection") and coll != opts["collection"]:
                continue
            meta = os.path.join(d, coll + ".metadata.json" + (".gz" if gz else ""))
            targets.append((db, coll, os.path.join(d, f), meta if os.path.exists(meta) else None))
    return targets


def _restore_metadata(meta_path: str | None, db: str, coll: str, gz: bool) -> dict | None:
    if meta_path is None:
        return None
    with _read_maybe_gz(meta_path, gz) as f:
        raw = json.loads(f.read().decode() or "{}")

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            if len(v) == 1 and next(iter(v)) in ("$numberInt", "$numberLong"):
                return int(next(iter(v.values())))
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    raw = plain(raw)
    return {
        "options": raw.get("options", {}),
        "uuid": raw.get("uuid", ""),
        "indexes": [{**i, "ns": f"{db}.{coll}"} for i in raw.get("indexes", [])],
    }


def mongorestore_body(opts: dict[str, Any], pos: list[str], series: str) -> int:
    """mongorestore: restore a mongodump directory (--drop, --oplogReplay, --nsExclude, --gzip)."""
    if len(pos) > 1:
        raise ToolError("error parsing positional arguments: too many positional arguments", EXIT_BAD_OPTIONS)
    root = opts.get("dir") or (pos[0] if pos else "dump")
    if opts.get("dir") and pos:
        raise ToolError(
            "error parsing positional arguments: cannot use both --dir and a positional argument "
            "to set the target directory",
            EXIT_BAD_OPTIONS,
        )
    if "batchSize" in opts and not str(opts["batchSize"]).isdigit():
        raise ToolError(
            f"error parsing command line options: invalid argument for flag `--batchSize' "
            f'(expected int): strconv.ParseInt: parsing "{opts["batchSize"]}": invalid syntax',
            EXIT_BAD_OPTIONS,
        )
    wc = opts.get("writeConcern")
    if wc is not None and not (wc == "majority" or wc.isdigit() or re.match(r"^\{.*\}$", wc.strip())):
        raise ToolError(f"error parsing --writeConcern: invalid write concern '{wc}'", EXIT_BAD_OPTIONS)
    if opts.get("oplogReplay") and opts.get("db"):
        raise ToolError("cannot use --oplogReplay with --db", EXIT_BAD_OPTIONS)
    if opts.get("oplogReplay") and opts.get("nsExclude") and generation(series).tools != "r3.2.22":
        # mongo-tools 100.9.4 mongorestore/mongorestore.go ParseAndValidateOptions; r3.6.3 and r4.0.9
        # mongorestore/mongorestore.go ParseAndValidateOptions too (r3.2.22 has no such check)
        raise ToolError("cannot use --oplogReplay with excludes specified", EXIT_BAD_OPTIONS)
    if not os.path.isdir(root):
        raise ToolError(f"mongorestore target '{root}' invalid: stat {root}: no such file or directory")
    gz = bool(opts.get("gzip"))
    session = open_session(opts, series)
    excludes, includes = opts.get("nsExclude", []), opts.get("nsInclude", [])
    total = failed = 0
    common.tool_log("preparing collections to restore from")
    for db, coll, path, meta_path in _find_restore_targets(root, opts, gz):
        ns = f"{db}.{coll}"
        if any(common.ns_match(p, ns) for p in excludes) or (
            includes and not any(common.ns_match(p, ns) for p in includes)
        ):
            continue
        if db in ("local", "config"):
            continue
        if meta_path:
            common.tool_log(f"reading metadata for {ns} from {meta_path}")
        meta = _restore_metadata(meta_path, db, coll, gz)
        if opts.get("drop"):
            common.tool_log(f"dropping collection {ns} before restoring")
        common.tool_log(f"restoring {ns} from {path}")
        common.send_doc(
            session.sock,
            {
                "op": "load",
                "db": db,
                "coll": coll,
                "drop": bool(opts.get("drop")),
                "metadata": json.dumps(meta) if meta else "",
                "stopOnError": bool(opts.get("stopOnError")),
            },
        )
        first = common.recv_doc(session.sock)
        with _read_maybe_gz(path, gz) as f:
            while True:
                chunk = f.read(common.STREAM_CHUNK)
                if not chunk:
                    break
                if first and first.get("ok"):
                    common.send_chunk(session.sock, chunk)
        if first and first.get("ok"):
            common.send_chunk(session.sock, b"")
            reply = common.recv_doc(session.sock)
        else:
            reply = first
        if not reply or not reply.get("ok"):
            raise ToolError(
                f"{ns}: error restoring from {path}: {(reply or {}).get('errmsg', 'connection lost')}"
            )
        n, fails = int(reply["n"]), int(reply.get("failures", 0))
        total += n
        failed += fails
        if fails:
            common.tool_log(f"continuing through error: {reply.get('firstError')}")
            if opts.get("stopOnError"):
                raise ToolError(f"{ns}: error restoring from {path}: {reply.get('firstError')}")
        common.tool_log(
            f"finished restoring {ns} ({n} document{'s' if n != 1 else ''}, {fails} failure"
            f"{'s' if fails != 1 else ''})"
        )
    if opts.get("oplogReplay"):
        oplog = os.path.join(root, "oplog.bson" + (".gz" if gz else ""))
        if not os.path.exists(oplog):
            raise ToolError("no oplog file to replay; make sure you run mongodump with --oplog")
        common.tool_log("replaying oplog")
        while os.path.exists(RESTORE_OPLOG_GATE):
            time.sleep(0.05)
        with _read_maybe_gz(oplog, gz) as f:
            data = f.read()
        if generation(series).tools.startswith("100."):
            applied = _replay_100(session, common.decode_all(data))
        else:
            applied = _replay_pre_100(session, common.decode_all(data), generation(series).tools)
        common.tool_log(f"applied {applied} oplog entries")
    if series == "3.2":
        common.tool_log("done")
    else:
        common.tool_log(f"{total} document(s) restored successfully. {failed} document(s) failed to restore.")
    return 0


OPLOG_FIELDS = ("ts", "h", "v", "op", "ns", "o", "o2")
"""mongo-tools r3.2.22/r3.6.3/r4.0.9 common/db/db.go `type Oplog struct` (ts, h, v, op, ns, o, o2; `ui`
too from r3.6, removed again by filterUUIDs without --preserveUUID): what an entry keeps when the
tools decode it into that struct and send it back (`t`, `wall`, `lsid`, `txnNumber`, ... go)."""


def _replay_pre_100(session: Session, entries: list[dict], tools: str) -> int:
    """mongo-tools r3.2.22, r3.6.3 and r4.0.9 mongorestore/oplog.go RestoreOplog: every entry but
    a no-op (`n`), in order and whatever its namespace (admin.*, local.*, config.*, system.*
    included: no filter there, and --nsExclude is refused with --oplogReplay from r3.6), decoded
    into db.Oplog and sent alone in an applyOps command ("error applying oplog: applyOps: ..." on
    failure). From r3.6 filterUUIDs also re-decodes the ops nested in an applyOps entry into
    db.Oplog. Not imitated: --oplogLimit, r4.0.9's createIndexes-to-system.indexes conversion (the
    lab's oplogs have neither). Return the number of ops applied."""
    applied = 0
    for entry in entries:
        if entry.get("op") == "n":
            continue
        op = {k: entry[k] for k in OPLOG_FIELDS if k in entry}
        body = op.get("o")
        if tools != "r3.2.22" and op.get("op") == "c" and isinstance(body, dict) and "applyOps" in body:
            nested = body["applyOps"] if isinstance(body["applyOps"], list) else []
            op["o"] = {**body, "applyOps": [{k: n[k] for k in OPLOG_FIELDS if k in n}
                                            for n in nested if isinstance(n, dict)]}
        session.checked("admin", {"applyOps": [op]}, "error applying oplog: applyOps")
        applied += 1
    return applied


def _replay_100(session: Session, entries: list[dict]) -> int:
    """mongo-tools 100.x --oplogReplay (oplogreplay.py): each op alone in an applyOps command; a
    failure stops the restore with mongo-tools' message. Return the number of ops applied."""
    applied = 0
    try:
        for op in oplogreplay.replay(entries):
            reply = session.command("admin", {"applyOps": [op]})
            if not reply.get("ok"):
                # the Go driver's CommandError: "(<codeName>) <errmsg>"
                name = f"({reply['codeName']}) " if reply.get("codeName") else ""
                raise ToolError(f"error applying oplog: applyOps: {name}{reply.get('errmsg')}")
            applied += 1
    except oplogreplay.ReplayError as exc:
        raise ToolError(str(exc)) from exc
    return applied


def mongodump_main(series: str, argv: list[str] | None = None) -> int:  # series: a generation key
    """Entry point of the mongodump stand-in."""
    return run_tool("mongodump", series, sys.argv[1:] if argv is None else argv, mongodump_body)


def mongorestore_main(series: str, argv: list[str] | None = None) -> int:
    """Entry point of the mongorestore stand-in."""
    return run_tool("mongorestore", series, sys.argv[1:] if argv is None else argv, mongorestore_body)


# --------------------------------------------------------------------------- the mongo shell


class ShellError(Exception):
    """A JS exception in the script."""


def _split_statements(text: str) -> list[str]:
    out, cur, depth, quote, i = [], [], 0, "", 0
    while i < len(text):
        ch = text[i]
        if quote:
            cur.append(ch)
            if ch == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch == "/" and text[i : i + 2] == "//":
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch in ";\n" and depth <= 0:
            s = "".join(cur).strip()
            if s:
                out.append(s)
            cur = []
        else:
            cur.append(ch)
        i += 1
    s = "".join(cur).strip()
    if s:
        out.append(s)
    return out


def _js_string(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return json.loads(s)
    if len(s) >= 2 and s[0] == s[-1] == "'":
        return json.loads('"' + s[1:-1].replace('"', '\\"').replace("\\'", "'") + '"')
    raise ShellError(f"SyntaxError: expected a string literal, got {s[:40]}")


def _split_args(s: str) -> list[str]:
    parts, cur, depth, quote = [], [], 0, ""
    i = 0
    while i < len(s):
        ch = s[i]
        if quote:
            cur.append(ch)
            if ch == "\\":
                cur.append(s[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            cur.append(ch)
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


CMD_RE = re.compile(
    r'^db(?:\.getSiblingDB\((?P<db>"[^"]*"|\'[^\']*\')\))?\.(?P<fn>adminCommand|runCommand)\((?P<arg>.*)\)$',
    re.S,
)
AUTH_RE = re.compile(r'^db(?:\.getSiblingDB\((?P<db>"[^"]*"|\'[^\']*\')\))?\.auth\((?P<args>.*)\)$', re.S)


class Shell:
    """Executes the supported statement subset against one connection."""

    def __init__(self, session: Session | None, current_db: str) -> None:
        self.session = session
        self.db = current_db

    def eval_command(self, expr: str) -> dict:
        m = CMD_RE.match(expr.strip())
        if not m:
            raise ShellError(f"ReferenceError: unsupported expression in the lab mongo shell: {expr[:60]}")
        db = _js_string(m["db"]) if m["db"] else self.db
        if m["fn"] == "adminCommand":
            db = "admin"
        arg = m["arg"].strip()
        if arg[:1] in "\"'":
            cmd: dict = {_js_string(arg): 1}
        else:
            try:
                cmd = common.from_ejson(json.loads(arg))
            except json.JSONDecodeError as exc:
                raise ShellError(f"SyntaxError: command document is not JSON: {exc}") from exc
            if not isinstance(cmd, dict):
                raise ShellError("TypeError: command must be a document")
        if self.session is None:
            raise ShellError("Error: not connected")
        return self.session.command(db, cmd)

    def run(self, stmt: str) -> int | None:
        """Run one statement; return an exit code for quit(), else None."""
        s = stmt.strip().rstrip(";").strip()
        if not s:
            return None
        m = re.match(r"^quit\((\d*)\)$", s)
        if m:
            return int(m[1] or 0)
        m = AUTH_RE.match(s)
        if m:
            args = _split_args(m["args"])
            if len(args) != 2:
                raise ShellError("Error: auth expects (username, password)")
            db = _js_string(m["db"]) if m["db"] else self.db
            assert self.session is not None
            reply = self.session.command(
                db,
                {
                    "authenticate": 1,
                    "user": _js_string(args[0]),
                    "pwd": _js_string(args[1]),
                    "mechanism": "SCRAM-SHA-1",
                },
            )
            if not reply.get("ok"):
                print("Error: Authentication failed.")
            return None
        m = re.match(r"^print\(JSON\.stringify\((.*)\)\)$", s, re.S)
        if m:
            print(common.dumps_ejson(self.eval_command(m[1])))
            sys.stdout.flush()
            return None
        m = re.match(r"^printjson\((.*)\)$", s, re.S)
        if m:
            print(json.dumps(common.to_ejson(self.eval_command(m[1])), indent="\t"))
            return None
        self.eval_command(s)
        return None


def mongo_main(key: str, argv: list[str] | None = None) -> int:
    """Entry point of the legacy mongo shell stand-in of generation `key` (versions.py)."""
    argv = sys.argv[1:] if argv is None else argv
    gen = generation(key)
    series = gen.family
    spec = dict(CONN_OPTS)
    spec.update(SHELL_OPTS)
    if gen.tls_aliases:  # the shell's --tls* options arrived with 4.2 (MongoDB 4.2 release notes)
        spec.update(SHELL_TLS_OPTS)
    for k in ("help", "version"):
        spec[k] = False
    try:
        opts, pos = parse_options(argv, spec)
    except ToolError as exc:
        msg = str(exc).replace("error parsing command line options: unknown option ", "unrecognised option ")
        print(f"Error parsing command line: {msg}", file=sys.stderr)
        print("try 'mongo --help' for more information", file=sys.stderr)
        return 2
    if opts.get("version"):
        print(f"MongoDB shell version v{gen.server}")
        return 0
    # like the real shell: the first positional not ending in ".js" is the db address, the rest are
    # script files only if they end in ".js" (a script named /tmp/tmp.XXXX is taken as an address)
    files = [p for p in pos if p.endswith(".js")]
    others = [p for p in pos if not p.endswith(".js")]
    address = others[0] if others else None
    current_db = "test"
    if len(others) > 1:
        print(f"Error parsing command line: too many positional options: {others[1]}", file=sys.stderr)
        return 2
    if address:
        name = address.partition("/")[2] if "/" in address else address
        if not name or any(c in name for c in '/\\. "$') or address.startswith("/"):
            print(f"MongoDB shell version v{gen.server}")
            print(f"Error: Invalid database name: '{address}' :")
            print("exception: connect failed")
            print("exiting with code 1")
            return 1
        if "/" in address:
            hostport, _, current_db = address.partition("/")
            host, _, port = hostport.partition(":")
            opts.setdefault("host", host)
            if port:
                opts.setdefault("port", port)
        else:
            current_db = address
    quiet = bool(opts.get("quiet"))
    if not quiet:
        print(f"MongoDB shell version v{gen.server}")
        print(
            f"connecting to: mongodb://{opts.get('host', '127.0.0.1')}:{opts.get('port', 27017)}/{current_db}"
        )
    try:
        session = Session(opts, series, "shell")
    except ToolError:
        host, port = opts.get("host", "127.0.0.1"), opts.get("port", 27017)
        print(
            f"Error: couldn't connect to server {host}:{port}, connection attempt failed: SocketException: "
            f"Error connecting to {host}:{port} :: caused by :: Connection refused :"
        )
        print("connect@src/mongo/shell/mongo.js:374:17")
        print("exception: connect failed")
        print("exiting with code 1")
        return 1
    if opts.get("username"):
        pw = opts.get("password")
        if pw is None:
            pw = read_password(opts)
        reply = session.command(
            opts.get("authenticationDatabase") or current_db,
            {"authenticate": 1, "user": opts["username"], "pwd": pw},
        )
        if not reply.get("ok"):
            print("Error: Authentication failed. :")
            print("exception: login failed")
            print("exiting with code 1")
            return 1
    shell = Shell(session, current_db)
    for code in opts.get("eval", []):
        try:
            for stmt in _split_statements(code):
                rc = shell.run(stmt)
                if rc is not None:
                    return rc
        except (ShellError, ToolError) as exc:
            print(f"uncaught exception: {exc} :", file=sys.stderr)
            print("@(shell eval):1:1", file=sys.stderr)
            print("exiting with code -4" if series == "4.4" else "", file=sys.stderr)
            return 252
    for path in files:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            print(f"file [{path}] doesn't exist")
            print(f"failed to load: {path}")
            print("exiting with code -3")
            return 253
        try:
            for stmt in _split_statements(text):
                rc = shell.run(stmt)
                if rc is not None:
                    return rc
        except (ShellError, ToolError) as exc:
            print(f"uncaught exception: {exc} :", file=sys.stderr)
            print(f"@{path}:1:1", file=sys.stderr)
            print(f"failed to load: {path}", file=sys.stderr)
            print("exiting with code -3", file=sys.stderr)
            return 253
    return 0
