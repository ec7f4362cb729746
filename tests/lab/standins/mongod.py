"""Stand-in for `mongod`, the juju-db server: MongoDB 4.4 (juju-db snap, Juju 2.9) or 3.2
(juju-mongodb3.2 package, Juju 2.8).  Test code, never shipped.

Honours the flags Juju's units pass (--dbpath, --port, --bind_ip/--bind_ip_all, --replSet, --auth,
--keyFile, --sslMode/--sslPEMKeyFile/--sslOnNormalPorts (3.2 and 4.4), --tlsMode/--tlsCertificateKeyFile
(4.4 only), --journal, --oplogSize, --storageEngine, --config FILE (`key = value` lines), ...).
Owns real BSON files under --dbpath (format in common.py), holds `mongod.lock` (flock + pid) while
running, listens (TLS) on the port, keeps the replica-set config in local.system.replset and an oplog
of writes in local.oplog.rs, checks users' hashed passwords, has the localhost exception.
Replication of data between members is NOT simulated (members heartbeat each other; the first
healthy member with a majority is PRIMARY and takes writes).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from typing import Any

import bson

from . import authz, common
from .storage import Storage, apply_update, matches, project, upsert_seed
from .txn import Transactions, oplog_update
from .versions import generation

# option name -> takes a value?  (shared; per-version extras below)
OPTIONS_COMMON = {
    "dbpath": True,
    "port": True,
    "bind_ip": True,
    "replSet": True,
    "auth": False,
    "noauth": False,
    "keyFile": True,
    "journal": False,
    "nojournal": False,
    "oplogSize": True,
    "storageEngine": True,
    "config": True,
    "f": True,
    "logpath": True,
    "logappend": False,
    "syslog": False,
    "quiet": False,
    "ipv6": False,
    "fork": False,
    "pidfilepath": True,
    "wiredTigerCacheSizeGB": True,
    "sslMode": True,
    "sslPEMKeyFile": True,
    "sslPEMKeyPassword": True,
    "sslCAFile": True,
    "sslOnNormalPorts": False,
    "sslAllowInvalidCertificates": False,
    "setParameter": True,
    "slowms": True,
    "nounixsocket": False,
    "version": False,
    "help": False,
    "h": False,
    "v": False,
    "clusterAuthMode": True,
    "enableMajorityReadConcern": True,
    "verbose": False,
    "maxConns": True,
}
OPTIONS_44 = {
    "bind_ip_all": False,
    "tlsMode": True,
    "tlsCertificateKeyFile": True,
    "tlsCertificateKeyFilePassword": True,
    "tlsCAFile": True,
    "tlsAllowInvalidCertificates": False,
    "tlsAllowConnectionsWithoutCertificates": False,
    "sslAllowConnectionsWithoutCertificates": False,
}
OPTIONS_32 = {
    "smallfiles": False,
    "noprealloc": False,
    "sslAllowConnectionsWithoutCertificates": False,
    "sslWeakCertificateValidation": False,
}

NO_AUTH_COMMANDS = {
    "ping",
    "isMaster",
    "ismaster",
    "hello",
    "buildInfo",
    "buildinfo",
    "authenticate",
    "replSetHeartbeat",
    "logout",
    "getnonce",
}
PROMPT_ELECTION_SECONDS = 0.3
"""After replSetInitiate no member takes writes until an election has run: the reply comes first,
the new set elects its primary afterwards on the replication executor (mongo r4.4
src/mongo/db/repl/replication_coordinator_impl.cpp _startElectSelfIfEligibleV1, a single node with
reason kSingleNodePromptElection), and a write is accepted only by a primary out of drain mode
(canAcceptWritesForDatabase); a write sent at once gets NotWritablePrimary, so a client must wait
and retry. How long the election takes is the server's and the machine's business: 0.3 s here,
enough that a client that does not wait fails."""
LOCALHOST_EXCEPTION = {"createUser", "replSetInitiate", "replSetGetStatus", "replSetGetConfig"}
WRITE_COMMANDS = {
    "insert",
    "update",
    "delete",
    "createUser",
    "updateUser",
    "drop",
    "dropDatabase",
    "applyOps",
    "create",
    "createRole",
    "dropRole",
    "grantRolesToUser",
    "revokeRolesFromUser",
    "replSetReconfig",
    "commitTransaction",
    "abortTransaction",
}


class StartupError(Exception):
    """mongod cannot start: message + exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- options


def parse_args(argv: list[str], key: str) -> dict[str, Any]:
    """Given mongod's argv (without argv[0]) and its generation key (versions.py), return the options.

    Raise StartupError (exit 2) on an unknown option, as real mongod does: the --tls* names exist from
    4.2 on (MongoDB 4.2 release notes), --bind_ip_all from 3.6 on (MongoDB 3.6 release notes)."""
    gen = generation(key)
    known = dict(OPTIONS_COMMON)
    known.update(OPTIONS_44 if gen.tls_aliases else OPTIONS_32)
    if gen.bind_ip_all:
        known["bind_ip_all"] = False
    opts: dict[str, Any] = {"setParameter": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            raise StartupError(
                "Error parsing command line: too many positional options have been specified "
                "on the command line",
                2,
            )
        name, eq, value = arg.lstrip("-").partition("=")
        if name not in known:
            raise StartupError(f"Error parsing command line: unrecognised option '{arg.split('=')[0]}'", 2)
        if known[name]:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise StartupError(
                        f"Error parsing command line: the required argument for option '--{name}' is missing",
                        2,
                    )
                value = argv[i]
            if name == "setParameter":
                opts["setParameter"].append(value)
            else:
                opts[name] = value
        else:
            opts[name] = True
        i += 1
    cfg = opts.get("config") or opts.get("f")
    if cfg:
        opts = {**parse_config(cfg, known), **opts}
    return opts


def parse_config(path: str, known: dict[str, bool]) -> dict[str, Any]:
    """Given a legacy `key = value` mongod config file, return its options (StartupError if invalid)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise StartupError(f"Error reading config file: {exc.strerror}", 2) from exc
    out: dict[str, Any] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = (p.strip() for p in line.partition("="))
        if not eq or key not in known:
            raise StartupError(f"Error parsing INI config file: unrecognised option '{key}'", 2)
        out[key] = (value.lower() == "true") if not known[key] else value
    return out


# --------------------------------------------------------------------------- logging


class Log:
    """mongod log: 4.4 structured JSON lines, 3.2 plain text; to --logpath or stdout."""

    def __init__(self, series: str, path: str | None) -> None:
        self.series = series
        self.f = open(path, "a", buffering=1) if path else sys.stdout  # noqa: SIM115

    def __call__(self, component: str, msg: str, **attr: Any) -> None:
        now = datetime.datetime.now(common.UTC)
        if self.series == "4.4":
            line = json.dumps(
                {
                    "t": {"$date": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"},
                    "s": "I",
                    "c": component,
                    "id": 0,
                    "ctx": threading.current_thread().name,
                    "msg": msg,
                    "attr": attr,
                },
                default=str,
            )
        else:
            extra = " ".join(f"{k}={v}" for k, v in attr.items())
            ts = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
            ctx = threading.current_thread().name
            line = f"{ts}+0000 I {component:<8} [{ctx}] {msg} {extra}".rstrip()
        self.f.write(line + "\n")
        self.f.flush()


# --------------------------------------------------------------------------- server state


def _local_ip(ip: str) -> bool:
    if ip in ("localhost", "127.0.0.1", "::1"):
        return True
    try:
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


class Mongod:
    """One running mongod: storage, auth, replica set, command dispatch."""

    def __init__(self, opts: dict[str, Any], series: str, log: Log) -> None:
        self.opts = opts
        self.series = series
        self.version = generation(series).server  # serve() sets the generation's own version
        self.log = log
        self.store = Storage(opts["dbpath"])
        self.port = int(opts.get("port", 27017))
        self.auth = bool(opts.get("auth")) or bool(opts.get("keyFile"))
        if opts.get("noauth"):
            self.auth = False
        self.repl_set = opts.get("replSet")
        self.key_hash = None
        self.started = time.time()
        self.health: dict[str, dict] = {}
        self.primary_name: str | None = None
        self.elected_after = 0.0  # time.monotonic() before which no member is PRIMARY (initiate)
        self.hb_lock = threading.Lock()
        self.tls_ctx: ssl.SSLContext | None = None
        self.client_tls: ssl.SSLContext | None = None
        self.txns = Transactions(self.store, series, lambda: bool(self.repl_set and self.rs_config()))

    # ---- replica set config
    def rs_config(self) -> dict | None:
        """Return the persisted replica-set config or None when not initiated."""
        docs = self.store.read("local", "system.replset")
        return docs[0] if docs else None

    def self_member(self, cfg: dict) -> dict | None:
        """Return the config member that is this mongod, if any."""
        for m in cfg.get("members", []):
            host, _, port = m["host"].rpartition(":")
            if int(port or 27017) == self.port and _local_ip(host):
                return m
        return None

    def probe(self, host: str) -> tuple[bool, str]:
        """Heartbeat one member: return (healthy, message)."""
        h, _, p = host.rpartition(":")
        if not common.lab_address(h):
            return False, f"Error connecting to {host} :: caused by :: No route to host (outside the lab)"
        try:
            sock = socket.create_connection((h, int(p)), timeout=2.0)
        except OSError as exc:
            return False, f"Error connecting to {host} :: caused by :: {exc.strerror or exc}"
        try:
            sock.settimeout(5.0)
            if self.client_tls is not None:
                sock = self.client_tls.wrap_socket(sock, server_hostname=h)
            reply = common.command(
                sock,
                "admin",
                {"replSetHeartbeat": self.repl_set, "keyHash": self.key_hash, "from": f"{self.port}"},
            )
        except (OSError, common.ProtocolError, ssl.SSLError) as exc:
            return False, f"Couldn't get a connection within the time limit: {exc}"
        finally:
            sock.close()
        if not reply.get("ok"):
            return False, str(reply.get("errmsg"))
        return True, ""

    def refresh_health(self) -> dict[str, dict]:
        """Probe every other member now (in parallel); update and return the health table."""
        cfg = self.rs_config()
        if not cfg:
            return {}
        me = self.self_member(cfg)
        results: dict[str, dict] = {}
        threads = []

        def run(member: dict) -> None:
            ok, msg = self.probe(member["host"])
            results[member["host"]] = {
                "health": 1 if ok else 0,
                "msg": msg,
                "when": datetime.datetime.utcnow().replace(microsecond=0),
            }

        for m in cfg["members"]:
            if m is me:
                results[m["host"]] = {"health": 1, "msg": "", "when": datetime.datetime.utcnow()}
                continue
            t = threading.Thread(target=run, args=(m,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(10)
        with self.hb_lock:
            self.health = results
            self.primary_name = self._elect(cfg, me)
        return results

    def _elect(self, cfg: dict, me: dict | None) -> str | None:
        if me is None or time.monotonic() < self.elected_after:
            return None
        voters = [m for m in cfg["members"] if m.get("votes", 1)]
        healthy = [m for m in voters if self.health.get(m["host"], {}).get("health")]
        if len(healthy) * 2 <= len(voters):
            return None
        for m in cfg["members"]:
            if self.health.get(m["host"], {}).get("health") and m.get("priority", 1) > 0:
                return m["host"]
        return None

    def heartbeat_loop(self) -> None:
        """Background: refresh member health every second."""
        while True:
            try:
                self.refresh_health()
            except Exception as exc:  # keep heartbeating whatever happens
                self.log("REPL", "heartbeat error", error=str(exc))
            time.sleep(1.0)

    def is_primary(self) -> bool:
        """Return True when this member takes writes."""
        cfg = self.rs_config()
        if not self.repl_set:
            return True
        if not cfg:
            return False
        me = self.self_member(cfg)
        if me is None:
            return False
        if len(cfg["members"]) == 1:
            return time.monotonic() >= self.elected_after
        with self.hb_lock:
            return self.primary_name == me["host"]

    # ---- users
    def users(self) -> list[dict]:
        """Return admin.system.users."""
        return self.store.read("admin", "system.users")

    # ---- privileges (authz.py: built-in roles, admin.system.roles, the checks)
    def user_role(self, role: str, db: str) -> dict | None:
        """The admin.system.roles document of a user-defined role, or None."""
        for r in self.store.read("admin", "system.roles"):
            if r.get("role") == role and r.get("db") == db:
                return r
        return None

    def privileges_of(self, user: str) -> list[authz.Privilege]:
        """The privileges of an authenticated user (admin db), from its roles as stored now: a role
        granted or revoked takes effect at the user's next command, as the server's user cache is
        invalidated by the user-management commands (authz_manager_external_state / UserCache)."""
        out: list[authz.Privilege] = []
        for u in self.users():
            if u.get("user") == user and u.get("db") == "admin":
                for r in u.get("roles", []):
                    try:
                        out += authz.role_privileges(r["role"], r["db"], self.user_role)
                    except authz.RoleNotFound:
                        continue  # a dropped role grants nothing (the server skips it too)
        return out

    def check_privileges(self, conn: Conn, db: str, cmd: dict) -> dict | None:
        """Given an authenticated connection and a command, return the server's Unauthorized reply
        when the user's roles do not allow it, else None (commands.cpp checkAuthorization)."""
        assert conn.user is not None
        privs = self.privileges_of(conn.user)
        if self.command_allowed(privs, db, cmd):
            return None
        msg = authz.unauthorized_message(db, cmd, authz.version_tuple(self.version) >= (3, 6))
        self.log("ACCESS", "Unauthorized", user=conn.user, db=db, command=next(iter(cmd)))
        return err(msg, 13, "Unauthorized")

    def command_allowed(self, privs: list[authz.Privilege], db: str, cmd: dict) -> bool:
        """Given privileges, a db and a command document, return whether the command is allowed.

        Each command's checkAuthForCommand / addRequiredPrivileges as the server has it (4.4
        src/mongo/db/commands/*.cpp; user_management_commands_common.cpp for the user and role
        commands): the actions below on the resource below. A command not listed needs all
        privileges (stricter: the stand-in serves no other)."""
        name = next(iter(cmd))
        arg = cmd[name]
        coll = arg if isinstance(arg, str) else ""
        ns = authz.ns_resource(db, coll)
        dbr: authz.Resource = ("db", db)
        ok = authz.authorized
        if name in ("commitTransaction", "abortTransaction"):
            return True  # no privilege beyond being authenticated (transaction commands)
        simple: dict[str, tuple[authz.Resource, set[str]]] = {
            "shutdown": (authz.CLUSTER, {"shutdown"}),
            "listDatabases": (authz.CLUSTER, {"listDatabases"}),
            "dbStats": (dbr, {"dbStats"}),
            "listCollections": (dbr, {"listCollections"}),
            "replSetInitiate": (authz.CLUSTER, {"replSetConfigure"}),
            "replSetReconfig": (authz.CLUSTER, {"replSetConfigure"}),
            "replSetGetConfig": (authz.CLUSTER, {"replSetGetConfig"}),
            "replSetGetStatus": (authz.CLUSTER, {"replSetGetStatus"}),
            "find": (ns, {"find"}),
            "count": (ns, {"find"}),
            "insert": (ns, {"insert"}),
            "delete": (ns, {"remove"}),
            "create": (ns, {"createCollection"}),
            "drop": (ns, {"dropCollection"}),
            "dropDatabase": (dbr, {"dropDatabase"}),
            "dropRole": (dbr, {"dropRole"}),
            "rolesInfo": (dbr, {"viewRole"}),
            "createIndexes": (ns, {"createIndex"}),
            "dropIndexes": (ns, {"dropIndex"}),
            "collMod": (ns, {"collMod"}),
        }
        if name in simple:
            resource, actions = simple[name]
            return ok(privs, resource, actions)
        if name == "update":
            upsert = any(isinstance(u, dict) and u.get("upsert") for u in cmd.get("updates", []))
            return ok(privs, ns, {"update", "insert"} if upsert else {"update"})
        roles = [r for r in cmd.get("roles", []) if isinstance(r, dict)]
        grant_all = all(ok(privs, ("db", str(r.get("db", db))), {"grantRole"}) for r in roles)
        if name == "createUser":
            return ok(privs, dbr, {"createUser"}) and grant_all
        if name == "updateUser":
            need = ok(privs, dbr, {"changePassword"}) if "pwd" in cmd else True
            if "roles" in cmd:
                need = need and grant_all and ok(privs, dbr, {"revokeRole"})
            return need
        if name == "grantRolesToUser":
            return grant_all
        if name == "revokeRolesFromUser":
            return all(ok(privs, ("db", str(r.get("db", db))), {"revokeRole"}) for r in roles)
        if name == "createRole":
            # checkAuthorizedToGrantPrivilege: a privilege on one db needs grantRole on that db, any
            # other (cluster, anyResource, anyNormal, a collection name) grantRole on admin
            for p in cmd.get("privileges", []):
                try:
                    res = authz.parse_resource(p.get("resource") if isinstance(p, dict) else None)
                except ValueError:
                    return False
                on = res[1] if res[0] in ("db", "ns") else "admin"
                if not ok(privs, ("db", on), {"grantRole"}):
                    return False
            return ok(privs, dbr, {"createRole"}) and grant_all
        if name == "_mergeAuthzCollections":
            merge = {"createUser", "createRole", "grantRole", "revokeRole"}
            if cmd.get("drop"):
                merge |= {"dropUser", "dropRole"}
            return ok(privs, ("anyNormal",), merge)
        if name == "applyOps":
            return authz.applyops_required(
                self.version, privs, cmd, lambda d, o: self.command_allowed(privs, d, o)
            )
        return authz.universal(privs)

    # ---- command dispatch
    def run_command(self, conn: Conn, db: str, cmd: dict) -> dict:
        """Given a connection, database and command document, return the reply document."""
        if not cmd:
            return err("no command", 59, "CommandNotFound")
        name = next(iter(cmd))
        handler = getattr(self, "cmd_" + name, None)
        if handler is None:
            return err(f"no such command: '{name}'", 59, "CommandNotFound")
        if self.auth and conn.user is None and name not in NO_AUTH_COMMANDS:
            exception = conn.is_local and not self.users() and name in LOCALHOST_EXCEPTION
            if not exception:
                return err(f"command {name} requires authentication", 13, "Unauthorized")
        if self.auth and conn.user is not None and name not in NO_AUTH_COMMANDS:
            refused = self.check_privileges(conn, db, cmd)
            if refused:
                return refused
        if name in WRITE_COMMANDS and name != "replSetReconfig" and not self.is_primary():
            return err("not master", 10107, "NotWritablePrimary")
        try:
            if cmd.get("autocommit") is False:  # a command of a multi-document transaction (txn.py)
                return self.txns.run(db, name, cmd, lambda: handler(conn, db, cmd))
            if name in WRITE_COMMANDS or name in ("find", "count"):
                with self.store.lock:
                    return handler(conn, db, cmd)
            return handler(conn, db, cmd)
        except ValueError as exc:
            return err(str(exc), 2, "BadValue")

    # -- no-auth commands
    def cmd_ping(self, conn: Conn, db: str, cmd: dict) -> dict:
        return {"ok": 1.0}

    def cmd_isMaster(self, conn: Conn, db: str, cmd: dict) -> dict:
        cfg = self.rs_config() if self.repl_set else None
        out: dict[str, Any] = {
            "ismaster": self.is_primary(),
            "maxBsonObjectSize": 16777216,
            "maxWireVersion": 9 if self.series == "4.4" else 4,
            "localTime": datetime.datetime.utcnow(),
        }
        if cfg:
            me = self.self_member(cfg)
            out.update(
                setName=cfg["_id"],
                setVersion=cfg.get("version", 1),
                hosts=[m["host"] for m in cfg["members"]],
                secondary=not out["ismaster"] and me is not None,
            )
            if me:
                out["me"] = me["host"]
            with self.hb_lock:
                if self.primary_name:
                    out["primary"] = self.primary_name
        out["ok"] = 1.0
        return out

    cmd_ismaster = cmd_isMaster
    cmd_hello = cmd_isMaster

    def cmd_buildInfo(self, conn: Conn, db: str, cmd: dict) -> dict:
        return {
            "version": self.version,
            "versionArray": [int(x) for x in self.version.split(".")] + [0],
            "storageEngines": ["wiredTiger"],
            "ok": 1.0,
        }

    cmd_buildinfo = cmd_buildInfo

    def cmd_authenticate(self, conn: Conn, db: str, cmd: dict) -> dict:
        user, pwd = cmd.get("user", ""), cmd.get("pwd", "")
        for u in self.users():
            if u.get("user") == user and u.get("db") == db and common.check_password(u, pwd):
                conn.user = user
                self.log("ACCESS", "Successfully authenticated", user=user, db=db, remote=conn.peer)
                return {"dbname": db, "user": user, "ok": 1.0}
        self.log(
            "ACCESS",
            "Authentication failed",
            mechanism=cmd.get("mechanism", "SCRAM-SHA-1"),
            principalName=user,
            authenticationDatabase=db,
            remote=conn.peer,
            error="AuthenticationFailed: SCRAM authentication failed, storedKey mismatch",
        )
        return err("Authentication failed.", 18, "AuthenticationFailed")

    def cmd_logout(self, conn: Conn, db: str, cmd: dict) -> dict:
        conn.user = None
        return {"ok": 1.0}

    def cmd_replSetHeartbeat(self, conn: Conn, db: str, cmd: dict) -> dict:
        if self.key_hash and cmd.get("keyHash") != self.key_hash:
            self.log(
                "ACCESS",
                "Authentication failed",
                mechanism="SCRAM-SHA-1",
                principalName="__system",
                remote=conn.peer,
            )
            return err("Authentication failed.", 18, "AuthenticationFailed")
        if not self.repl_set:
            return err("not running with --replSet", 76, "NoReplicationEnabled")
        if cmd.get("replSetHeartbeat") != self.repl_set:
            return err("repl set names do not match", 93, "InconsistentReplicaSetNames")
        return {"set": self.repl_set, "ok": 1.0}

    # -- admin / replica set
    def cmd_shutdown(self, conn: Conn, db: str, cmd: dict) -> dict:
        if db != "admin":
            return err("shutdown may only be run against the admin database.", 13, "Unauthorized")
        threading.Thread(
            target=lambda: (time.sleep(0.2), os.kill(os.getpid(), signal.SIGTERM)), daemon=True
        ).start()
        return {"ok": 1.0}

    def cmd_listDatabases(self, conn: Conn, db: str, cmd: dict) -> dict:
        if db != "admin":
            return err("listDatabases may only be run against the admin database.", 13, "Unauthorized")
        dbs, total = [], 0
        for name in self.store.databases():
            size = sum(self.store.storage_size(name, c) for c in self.store.collections(name))
            total += size
            dbs.append({"name": name, "sizeOnDisk": float(size), "empty": size == 0})
        return {"databases": dbs, "totalSize": float(total), "ok": 1.0}

    def cmd_dbStats(self, conn: Conn, db: str, cmd: dict) -> dict:
        scale = int(cmd.get("scale", 1) or 1)
        colls = self.store.collections(db)
        data = sum(self.store.size(db, c) for c in colls)
        storage = sum(self.store.storage_size(db, c) for c in colls)
        objects = 0
        for c in colls:
            if self.store.size(db, c) < 64 * 1024 * 1024:
                objects += sum(1 for _ in self.store.iter(db, c))
            else:  # estimate for big collections (like real mongod's cached counts, cheap)
                objects += self.store.size(db, c) // 512
        return {
            "db": db,
            "collections": len(colls),
            "views": 0,
            "objects": objects,
            "avgObjSize": float(data / objects) if objects else 0.0,
            "dataSize": float(data // scale),
            "storageSize": float(storage // scale),
            "indexes": len(colls),
            "indexSize": float(4096 * len(colls) // scale),
            "scaleFactor": scale,
            "ok": 1.0,
        }

    def cmd_listCollections(self, conn: Conn, db: str, cmd: dict) -> dict:
        batch = [
            {
                "name": c,
                "type": "collection",
                "options": self.store.metadata(db, c).get("options", {}),
                "info": {
                    "readOnly": False,
                    "uuid": bson.Binary(bytes.fromhex(self.store.metadata(db, c)["uuid"]), 4),
                },
            }
            for c in self.store.collections(db)
        ]
        return {
            "cursor": {"id": bson.Int64(0), "ns": f"{db}.$cmd.listCollections", "firstBatch": batch},
            "ok": 1.0,
        }

    def _members_ok(self, cfg: Any) -> str | None:
        if not isinstance(cfg, dict) or not isinstance(cfg.get("members"), list) or not cfg["members"]:
            return "replSet config must have a non-empty members array"
        if cfg.get("_id") != self.repl_set:
            return (
                f"Attempting to initiate a replica set with name {cfg.get('_id')}, but command line "
                f"reports {self.repl_set}; rejecting"
            )
        ids = set()
        for m in cfg["members"]:
            if "_id" not in m or "host" not in m:
                return "member must have _id and host"
            if m["_id"] in ids:
                return f"Found two member configurations with same _id field, members.{m['_id']}._id"
            ids.add(m["_id"])
        if self.self_member(cfg) is None:
            return (
                f"No host described in new configuration with {{version: {cfg.get('version', 1)}}} "
                f"for replica set {self.repl_set} maps to this node"
            )
        return None

    def cmd_replSetInitiate(self, conn: Conn, db: str, cmd: dict) -> dict:
        if not self.repl_set:
            return err("This node was not started with the replSet option", 76, "NoReplicationEnabled")
        if self.rs_config():
            return err("already initialized", 23, "AlreadyInitialized")
        cfg = cmd.get("replSetInitiate")
        problem = self._members_ok(cfg)
        if problem:
            return err(problem, 93, "InvalidReplicaSetConfig")
        cfg = dict(cfg)
        cfg.setdefault("version", 1)
        self.store.write("local", "system.replset", [cfg])
        self.store.create("local", "oplog.rs")
        self.store.oplog_append("n", "", {"msg": "initiating set"})
        self.elected_after = time.monotonic() + PROMPT_ELECTION_SECONDS
        self.refresh_health()
        self.log("REPL", "replSetInitiate config object", config=str(cfg))
        return {"ok": 1.0}

    def cmd_replSetReconfig(self, conn: Conn, db: str, cmd: dict) -> dict:
        current = self.rs_config()
        if not current:
            return err("no replset config has been received", 94, "NotYetInitialized")
        force = bool(cmd.get("force"))
        if not force and not self.is_primary():
            return err(
                "replSetReconfig should only be run on PRIMARY, but my state is SECONDARY; "
                'use the "force" argument to override',
                10107,
                "NotWritablePrimary",
            )
        cfg = cmd.get("replSetReconfig")
        problem = self._members_ok(cfg)
        if problem:
            return err(problem, 93, "InvalidReplicaSetConfig")
        cfg = dict(cfg)
        if force:
            cfg["version"] = int(current.get("version", 1)) + 10000 + int(time.time()) % 1000
        elif int(cfg.get("version", 0)) <= int(current.get("version", 1)):
            return err(
                f"New config is rejected :: caused by :: New config version {cfg.get('version')} must be "
                f"greater than the current version {current.get('version')}",
                103,
                "NewReplicaSetConfigurationIncompatible",
            )
        self.store.write("local", "system.replset", [cfg])
        self.refresh_health()
        return {"ok": 1.0}

    def cmd_replSetGetConfig(self, conn: Conn, db: str, cmd: dict) -> dict:
        cfg = self.rs_config()
        if not cfg:
            return err("no replset config has been received", 94, "NotYetInitialized")
        return {"config": cfg, "ok": 1.0}

    def cmd_replSetGetStatus(self, conn: Conn, db: str, cmd: dict) -> dict:
        if not self.repl_set:
            return err("not running with --replSet", 76, "NoReplicationEnabled")
        cfg = self.rs_config()
        if not cfg:
            return err("no replset config has been received", 94, "NotYetInitialized")
        me = self.self_member(cfg)
        if me is None:
            return err(
                "Our replica set config is invalid or we are not a member of it",
                93,
                "InvalidReplicaSetConfig",
            )
        health = self.refresh_health()
        primary = self.primary_name
        members = []
        for m in cfg["members"]:
            h = health.get(m["host"], {"health": 0, "msg": ""})
            if not h["health"]:
                state, state_str = 8, "(not reachable/healthy)"
            elif m["host"] == primary:
                state, state_str = 1, "PRIMARY"
            else:
                state, state_str = 2, "SECONDARY"
            entry: dict[str, Any] = {
                "_id": m["_id"],
                "name": m["host"],
                "health": float(h["health"]),
                "state": state,
                "stateStr": state_str,
            }
            if m is me:
                entry.update(uptime=int(time.time() - self.started), self=True)
            else:
                entry.update(lastHeartbeat=h.get("when"), lastHeartbeatMessage=h.get("msg", ""))
            members.append(entry)
        my_state = 1 if me["host"] == primary else 2
        return {
            "set": cfg["_id"],
            "date": datetime.datetime.utcnow(),
            "myState": my_state,
            "members": members,
            "ok": 1.0,
        }

    # -- users
    def cmd_createUser(self, conn: Conn, db: str, cmd: dict) -> dict:
        name = cmd["createUser"]
        if db != "admin":
            return err("stand-in mongod keeps users in admin only", 2, "BadValue")
        users = self.users()
        if any(u["user"] == name for u in users):
            return err(f'User "{name}@{db}" already exists', 51003, "Location51003")
        if "pwd" not in cmd:
            return err(
                "Must provide a 'pwd' field for all user documents, except those with '$external' as "
                "the user's source db",
                2,
                "BadValue",
            )
        doc = common.user_document(name, cmd["pwd"], list(cmd.get("roles", [])), self.series == "4.4")
        self.store.append("admin", "system.users", [doc])
        if not self.store.exists("admin", "system.version"):
            self.store.write("admin", "system.version", [{"_id": "authSchema", "currentVersion": 5}])
        self.store.oplog_append("i", "admin.system.users", doc)
        return {"ok": 1.0}

    def cmd_updateUser(self, conn: Conn, db: str, cmd: dict) -> dict:
        name = cmd["updateUser"]
        users = self.users()
        for i, u in enumerate(users):
            if u["user"] == name and u["db"] == db:
                if "pwd" in cmd:
                    u["credentials"] = common.scram_credentials(name, cmd["pwd"], self.series == "4.4")
                if "roles" in cmd:
                    u["roles"] = list(cmd["roles"])
                users[i] = u
                self.store.write("admin", "system.users", users)
                self.store.oplog_append("u", "admin.system.users", u, {"_id": u["_id"]})
                return {"ok": 1.0}
        return err(f"User {name}@{db} not found", 11, "UserNotFound")

    # -- roles (user_management_commands.cpp: createRole, dropRole, grantRolesToUser,
    # revokeRolesFromUser, rolesInfo). The stand-in keeps roles on admin only, as users.
    def _role_missing(self, roles: list) -> dict | None:
        for r in roles:
            if not isinstance(r, dict) or not isinstance(r.get("role"), str):
                return err("role names must be documents { role: ..., db: ... }", 2, "BadValue")
            role, rdb = r["role"], str(r.get("db"))
            if not authz.is_builtin(role, rdb) and not self.user_role(role, rdb):
                return err(f"Could not find role: {r['role']}@{r.get('db')}", 31, "RoleNotFound")
        return None

    def cmd_createRole(self, conn: Conn, db: str, cmd: dict) -> dict:
        name = cmd["createRole"]
        if db != "admin":
            return err("stand-in mongod keeps roles in admin only", 2, "BadValue")
        if authz.is_builtin(name, db):
            return err(f"Cannot create roles with the same name as a built-in role: {name}", 2, "BadValue")
        if self.user_role(name, db):
            code, code_name = (51002, "Location51002") if self.series == "4.4" else (11000, "DuplicateKey")
            return err(f'Role "{name}@{db}" already exists', code, code_name)
        privileges = cmd.get("privileges")
        if not isinstance(privileges, list):
            return err('"createRole" command requires a "privileges" array', 2, "BadValue")
        for priv in privileges:
            # a bad resource raises ValueError: run_command's BadValue reply
            authz.parse_resource(priv.get("resource") if isinstance(priv, dict) else None)
            for action in priv.get("actions", []):
                if action not in authz.ALL_ACTIONS:
                    return err(f"Unrecognized action privilege string: {action}", 2, "FailedToParse")
        roles = list(cmd.get("roles", []))
        missing = self._role_missing(roles)
        if missing:
            return missing
        doc = {"_id": f"{db}.{name}", "role": name, "db": db, "privileges": privileges, "roles": roles}
        self.store.append("admin", "system.roles", [doc])
        self.store.oplog_append("i", "admin.system.roles", doc)
        return {"ok": 1.0}

    def cmd_dropRole(self, conn: Conn, db: str, cmd: dict) -> dict:
        name = cmd["dropRole"]
        roles = self.store.read("admin", "system.roles")
        keep = [r for r in roles if not (r.get("role") == name and r.get("db") == db)]
        if len(keep) == len(roles):
            return err(f"Role {name}@{db} not found", 31, "RoleNotFound")
        # the role is removed from every user and role holding it first, then deleted
        users = self.users()
        for u in users:
            held = [r for r in u.get("roles", []) if not (r.get("role") == name and r.get("db") == db)]
            if held != u.get("roles", []):
                u["roles"] = held
                self.store.oplog_append(
                    "u", "admin.system.users", {"$set": {"roles": held}}, {"_id": u["_id"]}
                )
        self.store.write("admin", "system.users", users)
        self.store.write("admin", "system.roles", keep)
        self.store.oplog_append("d", "admin.system.roles", {"_id": f"{db}.{name}"})
        return {"ok": 1.0}

    def _change_user_roles(self, db: str, cmd: dict, name: str, grant: bool) -> dict:
        roles = [r if isinstance(r, dict) else {"role": r, "db": db} for r in cmd.get("roles", [])]
        if grant:
            missing = self._role_missing(roles)
            if missing:
                return missing
        users = self.users()
        for u in users:
            if u.get("user") == name and u.get("db") == db:
                held = list(u.get("roles", []))
                for r in roles:
                    key = {"role": r["role"], "db": r.get("db", db)}
                    if grant and key not in held:
                        held.append(key)
                    if not grant and key in held:
                        held.remove(key)
                u["roles"] = held
                self.store.write("admin", "system.users", users)
                self.store.oplog_append(
                    "u", "admin.system.users", {"$set": {"roles": held}}, {"_id": u["_id"]}
                )
                return {"ok": 1.0}
        return err(f"Could not find user \"{name}\" for db \"{db}\"", 11, "UserNotFound")

    def cmd_grantRolesToUser(self, conn: Conn, db: str, cmd: dict) -> dict:
        return self._change_user_roles(db, cmd, cmd["grantRolesToUser"], True)

    def cmd_revokeRolesFromUser(self, conn: Conn, db: str, cmd: dict) -> dict:
        return self._change_user_roles(db, cmd, cmd["revokeRolesFromUser"], False)

    def cmd_rolesInfo(self, conn: Conn, db: str, cmd: dict) -> dict:
        want = cmd["rolesInfo"]
        names = {want} if isinstance(want, str) else None
        roles = [
            {k: v for k, v in r.items() if k != "_id" and (k != "privileges" or cmd.get("showPrivileges"))}
            for r in self.store.read("admin", "system.roles")
            if r.get("db") == db and (names is None or r.get("role") in names)
        ]
        return {"roles": roles, "ok": 1.0}

    # -- CRUD
    def cmd_find(self, conn: Conn, db: str, cmd: dict) -> dict:
        coll = cmd["find"]
        filt, proj = cmd.get("filter") or {}, cmd.get("projection")
        limit = int(cmd.get("limit", 0) or 0)
        out = []
        for _raw, doc in self.store.iter(db, coll):
            if matches(doc, filt):
                out.append(project(doc, proj))
                if limit and len(out) >= limit and not cmd.get("sort"):
                    break
        for key, direction in reversed(list((cmd.get("sort") or {}).items())):
            out.sort(key=lambda d, k=key: _sort_key(d.get(k)), reverse=direction < 0)
        if limit:
            out = out[:limit]
        return {"cursor": {"firstBatch": out, "id": bson.Int64(0), "ns": f"{db}.{coll}"}, "ok": 1.0}

    def cmd_count(self, conn: Conn, db: str, cmd: dict) -> dict:
        n = sum(1 for _r, d in self.store.iter(db, cmd["count"]) if matches(d, cmd.get("query")))
        return {"n": n, "ok": 1.0}

    def cmd_insert(self, conn: Conn, db: str, cmd: dict) -> dict:
        coll = cmd["insert"]
        docs = list(cmd.get("documents", []))
        existing = {repr(d.get("_id")) for d in self.store.read(db, coll)}
        n, errors, good = 0, [], []
        for i, d in enumerate(docs):
            d = dict(d)
            if "_id" not in d:
                d = {"_id": bson.ObjectId(), **d}
            if repr(d["_id"]) in existing:
                errors.append(
                    {
                        "index": i,
                        "code": 11000,
                        "errmsg": f"E11000 duplicate key error collection: "
                        f"{db}.{coll} index: _id_ dup key: {{ _id: {d['_id']!r} }}",
                    }
                )
                if cmd.get("ordered", True):
                    break
                continue
            existing.add(repr(d["_id"]))
            good.append(d)
            n += 1
        self.store.append(db, coll, good)
        for d in good:
            self.store.oplog_append("i", f"{db}.{coll}", d)
        out: dict[str, Any] = {"n": n, "ok": 1.0}
        if errors:
            out["writeErrors"] = errors
        return out

    def cmd_update(self, conn: Conn, db: str, cmd: dict) -> dict:
        coll = cmd["update"]
        docs = self.store.read(db, coll)
        n = modified = 0
        upserted = []
        for idx, spec in enumerate(cmd.get("updates", [])):
            q, u = spec.get("q", {}), spec.get("u", {})
            hit = False
            for i, d in enumerate(docs):
                if matches(d, q):
                    hit = True
                    new = apply_update(d, u)
                    n += 1
                    if new != d:
                        modified += 1
                        docs[i] = new
                        self.store.oplog_append(
                            "u", f"{db}.{coll}", oplog_update(u, new, self.series), {"_id": new.get("_id")}
                        )
                    if not spec.get("multi"):
                        break
            if not hit and spec.get("upsert"):
                new = apply_update(upsert_seed(q), u)
                if any(k.startswith("$") for k in u) and "$setOnInsert" not in u:
                    new = {**upsert_seed(q), **new}
                if "_id" not in new:
                    new = {"_id": bson.ObjectId(), **new}
                docs.append(new)
                n += 1
                upserted.append({"index": idx, "_id": new["_id"]})
                self.store.oplog_append("i", f"{db}.{coll}", new)
        self.store.write(db, coll, docs)
        out: dict[str, Any] = {"n": n, "nModified": modified, "ok": 1.0}
        if upserted:
            out["upserted"] = upserted
        return out

    def cmd_delete(self, conn: Conn, db: str, cmd: dict) -> dict:
        coll = cmd["delete"]
        docs = self.store.read(db, coll)
        n = 0
        for spec in cmd.get("deletes", []):
            keep, removed = [], 0
            for d in docs:
                if (not spec.get("limit") or removed == 0) and matches(d, spec.get("q", {})):
                    removed += 1
                    self.store.oplog_append("d", f"{db}.{coll}", {"_id": d.get("_id")})
                    continue
                keep.append(d)
            docs = keep
            n += removed
        if self.store.exists(db, coll):
            self.store.write(db, coll, docs)
        return {"n": n, "ok": 1.0}

    def cmd_create(self, conn: Conn, db: str, cmd: dict) -> dict:
        if self.store.exists(db, cmd["create"]):
            return err(f"Collection {db}.{cmd['create']} already exists.", 48, "NamespaceExists")
        self.store.create(db, cmd["create"])
        self.store.oplog_append("c", f"{db}.$cmd", {"create": cmd["create"]})
        return {"ok": 1.0}

    def cmd_drop(self, conn: Conn, db: str, cmd: dict) -> dict:
        if not self.store.drop(db, cmd["drop"]):
            return err("ns not found", 26, "NamespaceNotFound")
        self.store.oplog_append("c", f"{db}.$cmd", {"drop": cmd["drop"]})
        return {"ns": f"{db}.{cmd['drop']}", "ok": 1.0}

    def cmd_dropDatabase(self, conn: Conn, db: str, cmd: dict) -> dict:
        if db in ("admin", "local"):
            return err(f"Cannot drop '{db}' database", 20, "IllegalOperation")
        self.store.drop_database(db)
        self.store.oplog_append("c", f"{db}.$cmd", {"dropDatabase": 1})
        return {"dropped": db, "ok": 1.0}

    def cmd_commitTransaction(self, conn: Conn, db: str, cmd: dict) -> dict:
        """Without `autocommit: false` (a transaction's own routes to txn.py): no transaction."""
        return err("Given transaction number does not match any in-progress transactions.",
                   251, "NoSuchTransaction")

    cmd_abortTransaction = cmd_commitTransaction

    def cmd_applyOps(self, conn: Conn, db: str, cmd: dict) -> dict:
        applied = 0
        for entry in cmd.get("applyOps", []):
            apply_oplog_entry(self.store, entry)
            applied += 1
        return {"applied": applied, "ok": 1.0}


def apply_oplog_entry(store: Storage, entry: dict) -> None:
    """Apply one oplog entry (i/u/d/c/n) idempotently, as oplog replay does; log it in the oplog."""
    op, ns = entry.get("op"), entry.get("ns", "")
    if op == "n":
        return
    db, _, coll = ns.partition(".")
    if op == "c":
        o = entry["o"]
        if "drop" in o:
            store.drop(db, o["drop"])
        elif "create" in o:
            store.create(db, o["create"])
        elif "dropDatabase" in o:
            store.drop_database(db)
        else:
            raise ValueError(f"unsupported command in oplog: {o}")
        store.oplog_append("c", ns, o)
        return
    docs = store.read(db, coll)
    if op == "i":
        doc = entry["o"]
        docs = [d for d in docs if d.get("_id") != doc.get("_id")] + [doc]
    elif op == "u":
        key = (entry.get("o2") or {}).get("_id")
        update = _oplog_modifiers(entry["o"])
        found = False
        for i, d in enumerate(docs):
            if d.get("_id") == key:
                docs[i] = (
                    apply_update(d, update)
                    if any(k.startswith("$") for k in update)
                    else {"_id": key, **{k: v for k, v in update.items() if k != "_id"}}
                )
                found = True
        if not found:  # applyOps upserts (alwaysUpsert defaults to true)
            docs.append(apply_update({"_id": key}, update) if any(k.startswith("$") for k in update)
                        else {"_id": key, **{k: v for k, v in update.items() if k != "_id"}})
    elif op == "d":
        docs = [d for d in docs if d.get("_id") != entry["o"].get("_id")]
    else:
        raise ValueError(f"unsupported oplog op: {op}")
    store.write(db, coll, docs)
    store.oplog_append(op, ns, entry["o"], entry.get("o2"))


def _stream_op_commands(req: dict) -> list[tuple[str, dict]]:
    """Given a raw data op of the lab's tools, return [(db, a command the real tool sends for it)],
    whose privileges the op needs: a dump reads with `find`, mongodump --oplog reads local.oplog.rs,
    a load inserts (mongorestore's insert batches; --drop drops the collection first). Users and roles
    (admin.system.users/roles) are loaded as mongorestore does it, through admin.tempusers/temproles
    and `_mergeAuthzCollections`, which needs createUser, createRole, grantRole, revokeRole (and
    dropUser, dropRole with --drop) on any normal resource (mongo-tools mongorestore/metadata.go
    RestoreUsersOrRoles; user_management_commands.cpp _mergeAuthzCollections)."""
    op = req["op"]
    if op in ("oplogPos", "oplogRead"):
        return [("local", {"find": "oplog.rs"})]
    if op == "dump":
        return [(str(req["db"]), {"find": str(req["coll"])})]
    db, coll = str(req["db"]), str(req["coll"])
    if db == "admin" and coll in ("system.users", "system.roles"):
        temp = "tempusers" if coll == "system.users" else "temproles"
        return [("admin", {"insert": temp}),
                ("admin", {"_mergeAuthzCollections": 1, "drop": bool(req.get("drop"))})]
    return [(db, {"drop": coll})] * bool(req.get("drop")) + [(db, {"insert": coll})]


def _oplog_modifiers(o: dict) -> dict:
    """Given an update oplog entry's `o`, return the update to apply: `$v: 1` (4.4's modifier form)
    dropped; `$v: 2` delta entries (MongoDB 5.0+) refused, as a 4.4 server cannot have written them."""
    if o.get("$v") == 2 or "diff" in o:
        raise ValueError("unsupported oplog update format ($v: 2) for this server version")
    return {k: v for k, v in o.items() if k != "$v"}


def _sort_key(v: Any) -> tuple:
    if v is None:
        return (0, 0)
    if isinstance(v, int | float):
        return (1, v)
    if isinstance(v, str):
        return (2, v)
    return (3, repr(v))


def err(msg: str, code: int, name: str) -> dict:
    """Return a command error reply."""
    return {"ok": 0.0, "errmsg": msg, "code": code, "codeName": name}


# --------------------------------------------------------------------------- connections


class Conn:
    """Per-connection state."""

    def __init__(self, peer: str, is_local: bool) -> None:
        self.peer = peer
        self.is_local = is_local
        self.user: str | None = None


class Handler(socketserver.BaseRequestHandler):
    """Serves one client connection."""

    server: Server

    def handle(self) -> None:
        m = self.server.mongod
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer_ip = self.client_address[0]
        try:
            if m.tls_ctx is not None:
                sock.settimeout(10)
                sock = m.tls_ctx.wrap_socket(sock, server_side=True)
                sock.settimeout(None)
        except (OSError, ssl.SSLError) as exc:
            m.log(
                "NETWORK",
                "SSL handshake failed / plain connection to TLS port",
                remote=peer_ip,
                error=str(exc),
            )
            return
        conn = Conn(
            f"{peer_ip}:{self.client_address[1]}", peer_ip in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
        )
        try:
            while True:
                req = common.recv_doc(sock)
                if req is None:
                    return
                op = req.get("op")
                if op == "cmd":
                    common.send_doc(sock, m.run_command(conn, req.get("db", "admin"), req.get("cmd", {})))
                elif op in ("dump", "oplogPos", "oplogRead", "load"):
                    self.stream_op(m, conn, sock, req)
                else:
                    common.send_doc(sock, err(f"unknown op {op}", 59, "CommandNotFound"))
        except (OSError, common.ProtocolError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def stream_op(self, m: Mongod, conn: Conn, sock: Any, req: dict) -> None:
        """Raw data ops used by mongodump / mongorestore."""
        op = req["op"]
        if m.auth and conn.user is None:
            common.send_doc(sock, err(f"command {op} requires authentication", 13, "Unauthorized"))
            return
        for db_cmd in _stream_op_commands(req) if m.auth else []:
            refused = m.check_privileges(conn, *db_cmd)
            if refused:
                common.send_doc(sock, refused)
                return
        if op == "oplogPos":
            if not (m.repl_set and m.rs_config()):
                common.send_doc(sock, err("no oplog: not a replica set member", 94, "NotYetInitialized"))
                return
            common.send_doc(sock, {"pos": bson.Int64(m.store.oplog_size()), "ok": 1.0})
            return
        if op in ("dump", "oplogRead"):
            db, coll = ("local", "oplog.rs") if op == "oplogRead" else (req["db"], req["coll"])
            start = int(req.get("from", 0))
            with m.store.lock:
                try:
                    f = open(m.store.file(db, coll), "rb")  # noqa: SIM115
                except FileNotFoundError:
                    f = None
                size = os.fstat(f.fileno()).st_size if f else 0
                meta = m.store.metadata(db, coll)
            common.send_doc(
                sock, {"ok": 1.0, "size": bson.Int64(max(size - start, 0)), "metadata": json.dumps(meta)}
            )
            if f:
                with f:
                    f.seek(start)
                    left = size - start
                    while left > 0:
                        chunk = f.read(min(common.STREAM_CHUNK, left))
                        if not chunk:
                            break
                        common.send_chunk(sock, chunk)
                        left -= len(chunk)
            common.send_chunk(sock, b"")
            return
        # load: bulk insert of a mongodump .bson stream
        db, coll = req["db"], req["coll"]
        if not m.is_primary():
            common.send_doc(sock, err("not master", 10107, "NotWritablePrimary"))
            return
        common.send_doc(sock, {"ok": 1.0})
        tmp = m.store.file(db, coll) + f".load{threading.get_ident()}"
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        counter = common.DocCounter()
        with open(tmp, "wb") as out:
            for chunk in common.iter_chunks(sock):
                counter.feed(chunk)
                out.write(chunk)
        if not counter.complete():
            os.unlink(tmp)
            common.send_doc(sock, err("invalid BSON: truncated document", 2, "BadValue"))
            return
        meta = json.loads(req["metadata"]) if req.get("metadata") else None
        with m.store.lock:
            if req.get("drop") or not m.store.size(db, coll):
                m.store.replace_file(db, coll, tmp, meta)
                common.send_doc(sock, {"n": bson.Int64(counter.count), "failures": 0, "ok": 1.0})
                return
            existing = {repr(d.get("_id")) for _r, d in m.store.iter(db, coll)}
            good, failures, first_error = bytearray(), 0, None
            for raw, d in common.iter_file_docs(tmp):
                if repr(d.get("_id")) in existing:
                    failures += 1
                    first_error = first_error or (
                        f"E11000 duplicate key error collection: {db}.{coll} index: "
                        f"_id_ dup key: {{ _id: {d.get('_id')!r} }}"
                    )
                    if req.get("stopOnError"):
                        break
                    continue
                good += raw
            os.unlink(tmp)
            m.store.append_raw(db, coll, bytes(good))
        common.send_doc(
            sock,
            {
                "n": bson.Int64(counter.count - failures),
                "failures": failures,
                "firstError": first_error or "",
                "ok": 1.0,
            },
        )


class Server(socketserver.ThreadingTCPServer):
    """Listener (IPv4)."""

    daemon_threads = True
    allow_reuse_address = True
    mongod: Mongod


# --------------------------------------------------------------------------- main


def _tls_settings(opts: dict[str, Any], series: str) -> tuple[str, str | None]:
    mode = (
        opts.get("tlsMode") or opts.get("sslMode") or ("requireSSL" if opts.get("sslOnNormalPorts") else None)
    )
    pem = opts.get("tlsCertificateKeyFile") or opts.get("sslPEMKeyFile")
    if mode is None:
        mode = "requireTLS" if pem and series == "4.4" else ("requireSSL" if pem else "disabled")
    return mode, pem


def main(argv: list[str], key: str) -> int:
    """Entry point of the mongod stand-in of generation `key` (versions.py); return the exit code."""
    gen = generation(key)
    series = gen.family
    try:
        opts = parse_args(argv, key)
    except StartupError as exc:
        print(str(exc), file=sys.stderr)
        print(f"try '{sys.argv[0]} --help' for more information", file=sys.stderr)
        return exc.code
    if opts.get("version"):
        print(f"db version v{gen.server}")
        return 0
    try:
        log = Log(series, opts.get("logpath"))
    except OSError:
        msg = f"Error during global initialization: FileNotOpen: Failed to open {opts.get('logpath')}"
        print(msg, file=sys.stderr)
        return 1
    try:
        return serve(opts, key, log)
    except StartupError as exc:
        log("CONTROL", str(exc))
        print(str(exc), file=sys.stderr)
        return exc.code


def serve(opts: dict[str, Any], key: str, log: Log) -> int:
    """Start the server of generation `key` and serve until SIGTERM/SIGINT; return the exit code."""
    gen = generation(key)
    series = gen.family
    dbpath = opts.setdefault("dbpath", "/data/db")
    if not os.path.isdir(dbpath):
        raise StartupError(f"NonExistentPath: Data directory {dbpath} not found., terminating", 100)
    mongod = Mongod(opts, series, log)
    mongod.version = gen.server
    key_file = opts.get("keyFile")
    if key_file:
        try:
            st = os.stat(key_file)
            with open(key_file, "rb") as f:
                key = b"".join(f.read().split())
        except OSError as exc:
            raise StartupError(f"error getting file {key_file}: {exc.strerror}", 1) from exc
        if st.st_mode & 0o077:
            raise StartupError(f"permissions on {key_file} are too open", 1)
        if not 6 <= len(key) <= 1024:
            raise StartupError(f"security key in {key_file} has an invalid length", 1)
        mongod.key_hash = hashlib.sha256(key).hexdigest()
    mode, pem = _tls_settings(opts, series)
    if mode not in ("disabled",):
        if not pem:
            raise StartupError("need tlsCertificateKeyFile or certificateSelector when TLS is enabled", 2)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(pem)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(f"cannot read certificate file: {pem} {exc}", 1) from exc
        ca_file = opts.get("tlsCAFile") or opts.get("sslCAFile")
        if ca_file:
            # net.tls.CAFile without allowConnectionsWithoutCertificates: every client must present a
            # certificate that chains to the CA, or the handshake fails (MongoDB 4.4 manual,
            # net.tls.allowConnectionsWithoutCertificates; Juju 4.4.30: juju/juju#22455 "... EOF")
            try:
                ctx.load_verify_locations(ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise StartupError(f"cannot read certificate authority file: {ca_file} {exc}", 1) from exc
            without_cert = opts.get("tlsAllowConnectionsWithoutCertificates") or opts.get(
                "sslAllowConnectionsWithoutCertificates"
            )
            ctx.verify_mode = ssl.CERT_OPTIONAL if without_cert else ssl.CERT_REQUIRED
        mongod.tls_ctx = ctx
        # members dial each other with the server certificate as client certificate (net.tls
        # clusterFile defaults to certificateKeyFile)
        mongod.client_tls = common.client_context(True, None, True)
        mongod.client_tls.load_cert_chain(pem)
    # the lock: flock + pid, like mongod.lock
    lock_path = os.path.join(dbpath, "mongod.lock")
    lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        raise StartupError(
            f"DBPathInUse: Unable to lock the lock file: {lock_path} (Resource temporarily "
            f"unavailable). Another mongod instance is already running on the {dbpath} "
            f"directory, terminating",
            100,
        ) from exc
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())
    if not os.path.exists(os.path.join(dbpath, "storage.bson")):
        with open(os.path.join(dbpath, "storage.bson"), "wb") as f:
            f.write(
                common.encode(
                    {
                        "storage": {"engine": opts.get("storageEngine", "wiredTiger")},
                        "version": gen.server,
                    }
                )
            )
    # before 3.6 mongod binds every address unless --bind_ip says otherwise (3.6 release notes)
    bind_all = opts.get("bind_ip_all") or (not gen.bind_ip_all and not opts.get("bind_ip"))
    addrs = ["0.0.0.0"] if bind_all else [a.strip() for a in str(opts.get("bind_ip", "127.0.0.1")).split(",")]
    servers: list[Server] = []
    try:
        for addr in addrs:
            srv = Server((addr, mongod.port), Handler, bind_and_activate=False)
            srv.mongod = mongod
            srv.server_bind()
            srv.server_activate()
            servers.append(srv)
    except OSError as exc:
        for s in servers:
            s.server_close()
        os.ftruncate(lock_fd, 0)
        raise StartupError(f"Failed to set up listener: SocketException: {exc.strerror}", 48) from exc
    log(
        "CONTROL",
        "MongoDB starting",
        pid=os.getpid(),
        port=mongod.port,
        dbPath=dbpath,
        version=mongod.version,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        log("CONTROL", "got signal, will terminate after current cmd ends", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for srv in servers:
        threading.Thread(
            target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True, name="listener"
        ).start()
    if mongod.repl_set:
        threading.Thread(target=mongod.heartbeat_loop, daemon=True, name="ReplCoord").start()
    log("NETWORK", "Waiting for connections", port=mongod.port, ssl="on" if mongod.tls_ctx else "off")
    while not stop.wait(0.5):
        pass
    for srv in servers:
        srv.shutdown()
        srv.server_close()
    with mongod.store.lock:
        os.ftruncate(lock_fd, 0)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
    log("CONTROL", "now exiting", code=0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], os.environ.get("MONGOD_SERIES", "4.4")))
