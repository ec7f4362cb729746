"""Privileges of the stand-in mongod: built-in roles, user-defined roles (admin.system.roles) and the
check of the privileges each command needs, as MongoDB checks them. Test code, never shipped.

Sources (mongodb/mongo; read per file, the library holds one stored version of each, so each one is
named by what it contains rather than by a tag):
- built-in roles: src/mongo/db/auth/builtin_roles.cpp (readRoleActions, readWriteRoleActions,
  userAdminRoleActions, dbAdminRoleActions, the cluster* action sets, add*Privileges). Only the
  actions of commands the stand-in serves are listed; `applyOps` on the cluster (dbAdminAnyDatabase)
  arrived after 4.4 and is left out, as is useUUID in clusterMonitor (stricter).
- matching: authorization_session_impl.cpp buildResourceSearchList: a collection is matched by
  anyResource, its exact namespace, its collection name in any db and - only when it is not a
  `system.*` collection - by anyNormalResource and its database. So Juju's roles
  (readWriteAnyDatabase...) cover no write to admin.system.users. Up to 4.4 anyNormalResource
  includes the local and config dbs (Juju's machine users read local.oplog.rs for mongodump --oplog).
- the refusal: commands.cpp (3.2: _checkAuthorizationImpl; 4.4: Command::checkAuthorization):
  Unauthorized (13) "not authorized on <db> to execute command <the command as BSON text>".
- applyOps: src/mongo/db/commands/apply_ops.cpp and apply_ops_cmd_common.cpp /
  oplog_application_checks.cpp: see applyops_required().
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import bson

ANY_ACTION = "anyAction"

READ = frozenset({"find", "listCollections", "listIndexes", "dbStats", "collStats", "killCursors", "dbHash",
                  "changeStream", "planCacheRead"})
READ_WRITE = READ | {"insert", "update", "remove", "createCollection", "dropCollection", "createIndex",
                     "dropIndex", "renameCollectionSameDB", "convertToCapped", "emptycapped"}
USER_ADMIN = frozenset({"createUser", "createRole", "dropUser", "dropRole", "grantRole", "revokeRole",
                        "viewUser", "viewRole", "changePassword", "changeCustomData",
                        "setAuthenticationRestriction"})
DB_ADMIN = frozenset({"bypassDocumentValidation", "collMod", "collStats", "compact", "convertToCapped",
                      "createCollection", "dbStats", "dropCollection", "dropDatabase", "dropIndex",
                      "createIndex", "enableProfiler", "listCollections", "listIndexes", "reIndex",
                      "renameCollectionSameDB", "storageDetails", "validate", "planCacheRead",
                      "planCacheWrite", "planCacheIndexFilter"})
CLUSTER_MONITOR = frozenset({"connPoolStats", "getCmdLineOpts", "getLog", "getParameter", "getShardMap",
                             "hostInfo", "listDatabases", "listShards", "netstat", "replSetGetConfig",
                             "replSetGetStatus", "serverStatus", "top", "inprog", "shardingState"})
HOST_MANAGER = frozenset({"applicationMessage", "connPoolSync", "logRotate", "setParameter", "shutdown",
                          "touch", "unlock", "flushRouterConfig", "fsync", "invalidateUserCache",
                          "killAnyCursor", "killAnySession", "killop", "replSetResizeOplog", "resync"})
CLUSTER_MANAGER = frozenset({"appendOplogNote", "applicationMessage", "replSetConfigure", "replSetGetConfig",
                             "replSetGetStatus", "replSetStateChange", "resync", "addShard", "removeShard",
                             "listSessions", "listShards", "flushRouterConfig", "cleanupOrphaned",
                             "setFeatureCompatibilityVersion"})
WRITE = frozenset({"insert", "update", "remove"})

ALL_ACTIONS = (READ_WRITE | USER_ADMIN | DB_ADMIN | CLUSTER_MONITOR | HOST_MANAGER | CLUSTER_MANAGER
               | {ANY_ACTION, "authSchemaUpgrade", "forceUUID", "useUUID", "applyOps", "validate",
                  "changeOwnPassword", "changeOwnCustomData"})
"""The action names createRole accepts here (action_types.txt has more; none the lab uses)."""

Resource = tuple[str, ...]
"""("any",) anyResource, ("cluster",), ("anyNormal",) {db: "", collection: ""}, ("db", D),
("coll", C) {db: "", collection: C}, ("ns", D, C)."""
Privilege = tuple[Resource, frozenset[str]]

CLUSTER: Resource = ("cluster",)


def _p(resource: Resource, actions: Iterable[str]) -> Privilege:
    return resource, frozenset(actions)


def _read_write_any() -> list[Privilege]:
    return [_p(("anyNormal",), READ_WRITE), _p(CLUSTER, {"listDatabases"}),
            _p(("coll", "system.js"), READ_WRITE)]


def _user_admin_any() -> list[Privilege]:
    index = READ | {"createIndex", "dropIndex"}
    return [
        _p(("anyNormal",), USER_ADMIN),
        _p(CLUSTER, {"listDatabases", "authSchemaUpgrade", "invalidateUserCache", "viewUser"}),
        _p(("coll", "system.users"), READ),
        _p(("ns", "admin", "system.users"), index),
        _p(("ns", "admin", "system.roles"), index),
        _p(("ns", "admin", "system.version"), READ),
        _p(("ns", "admin", "system.backup_users"), READ),
    ]


def _db_admin_any() -> list[Privilege]:
    return [
        _p(CLUSTER, {"listDatabases"}),
        _p(("anyNormal",), DB_ADMIN),
        _p(("coll", "system.profile"), READ | {"convertToCapped", "createCollection", "dropCollection"}),
    ]


def _cluster_admin() -> list[Privilege]:
    return [
        _p(CLUSTER, CLUSTER_MONITOR | HOST_MANAGER | CLUSTER_MANAGER),
        _p(("db", "config"), READ | WRITE),
        _p(("db", "local"), READ | WRITE),
        _p(("ns", "local", "system.replset"), READ),
        _p(("anyNormal",), {"dropDatabase", "killCursors"}),
    ]


def _backup() -> list[Privilege]:
    return [
        _p(CLUSTER, {"appendOplogNote", "serverStatus", "getParameter", "listDatabases"}),
        _p(("anyNormal",), {"find", "listCollections", "listIndexes", "collStats"}),
        _p(("db", "local"), {"find"}),
        _p(("db", "config"), {"find"}),
        _p(("coll", "system.users"), {"find"}),
        _p(("coll", "system.js"), {"find"}),
        _p(("ns", "admin", "system.roles"), {"find"}),
        _p(("ns", "admin", "system.version"), {"find"}),
    ]


def _restore() -> list[Privilege]:
    basic = {"bypassDocumentValidation", "collMod", "convertToCapped", "createCollection", "createIndex",
             "dropCollection", "insert"}
    return [
        _p(("anyNormal",), basic | USER_ADMIN),
        _p(("coll", "system.js"), basic),
        _p(("any",), {"listCollections"}),
        _p(("db", "config"), basic),
        _p(("db", "local"), basic),
        _p(("ns", "admin", "tempusers"), {"find"}),
        _p(("ns", "admin", "temproles"), {"find"}),
        _p(("ns", "admin", "system.version"), basic | {"find"}),
        _p(("coll", "system.users"), basic | {"find", "update", "remove"}),
        _p(CLUSTER, {"getParameter", "forceUUID", "useUUID"}),
        _p(("ns", "admin", "system.roles"), {"createIndex"}),
    ]


def _root() -> list[Privilege]:
    return [*_cluster_admin(), *_user_admin_any(), *_db_admin_any(), *_read_write_any(), *_backup(),
            *_restore(), _p(("any",), {"validate"})]


ADMIN_ONLY: dict[str, Callable[[], list[Privilege]]] = {
    "readAnyDatabase": lambda: [_p(("anyNormal",), READ), _p(CLUSTER, {"listDatabases"}),
                                _p(("coll", "system.js"), READ)],
    "readWriteAnyDatabase": _read_write_any,
    "userAdminAnyDatabase": _user_admin_any,
    "dbAdminAnyDatabase": _db_admin_any,
    "clusterMonitor": lambda: [_p(CLUSTER, CLUSTER_MONITOR), _p(("db", "local"), READ),
                               _p(("db", "config"), READ)],
    "hostManager": lambda: [_p(CLUSTER, HOST_MANAGER), _p(("anyNormal",), {"killCursors"})],
    "clusterManager": lambda: [_p(CLUSTER, CLUSTER_MANAGER), _p(("db", "config"), READ | WRITE),
                               _p(("db", "local"), WRITE), _p(("ns", "local", "system.replset"), READ)],
    "clusterAdmin": _cluster_admin,
    "backup": _backup,
    "restore": _restore,
    "root": _root,
    "__system": lambda: [_p(("any",), {ANY_ACTION})],
}
"""The built-in roles that exist only on the admin database (builtin_roles.cpp: adminOnly)."""

PER_DB: dict[str, Callable[[str], list[Privilege]]] = {
    "read": lambda d: [_p(("db", d), READ), _p(("ns", d, "system.js"), READ)],
    "readWrite": lambda d: [_p(("db", d), READ_WRITE), _p(("ns", d, "system.js"), READ_WRITE)],
    "dbAdmin": lambda d: [_p(("db", d), DB_ADMIN),
                          _p(("ns", d, "system.profile"), READ | {"createCollection", "dropCollection"})],
    "userAdmin": lambda d: [_p(("db", d), USER_ADMIN)],
    "dbOwner": lambda d: [_p(("db", d), READ_WRITE | DB_ADMIN | USER_ADMIN),
                          _p(("ns", d, "system.js"), READ_WRITE)],
}


class RoleNotFound(Exception):
    """A role named by a user or a role does not exist."""


def is_builtin(role: str, db: str) -> bool:
    """Given a role name and its db, return whether it is a built-in role."""
    return role in PER_DB or (db == "admin" and role in ADMIN_ONLY)


def parse_resource(doc: Any) -> Resource:
    """Given a privilege's `resource` document, return the Resource. Raise ValueError (BadValue)."""
    if not isinstance(doc, dict):
        raise ValueError("resource must be an object")
    if doc.get("anyResource") is True:
        return ("any",)
    if doc.get("cluster") is True:
        return CLUSTER
    db, coll = doc.get("db"), doc.get("collection")
    if not isinstance(db, str) or not isinstance(coll, str):
        raise ValueError(f"Unrecognized resource {doc}")
    if not db and not coll:
        return ("anyNormal",)
    if not coll:
        return ("db", db)
    if not db:
        return ("coll", coll)
    return ("ns", db, coll)


def role_privileges(role: str, db: str, user_roles: Callable[[str, str], dict | None],
                    seen: set[tuple[str, str]] | None = None) -> list[Privilege]:
    """Given a role (name, db) and a lookup of user-defined roles (admin.system.roles documents by
    name and db), return its privileges with those of the roles it inherits. Raise RoleNotFound."""
    seen = set() if seen is None else seen
    if (role, db) in seen:
        return []
    seen.add((role, db))
    if role in PER_DB:
        return PER_DB[role](db)
    if db == "admin" and role in ADMIN_ONLY:
        return ADMIN_ONLY[role]()
    doc = user_roles(role, db)
    if doc is None:
        raise RoleNotFound(f"Role {role}@{db} does not exist")
    out = [(parse_resource(p.get("resource")), frozenset(p.get("actions", [])))
           for p in doc.get("privileges", [])]
    for r in doc.get("roles", []):
        out += role_privileges(r["role"], r["db"], user_roles, seen)
    return out


def _search_list(target: Resource) -> list[Resource]:
    """authorization_session_impl.cpp buildResourceSearchList: the patterns that match `target`."""
    out: list[Resource] = [("any",)]
    if target[0] in ("cluster", "anyNormal"):
        return [*out, target]
    if target[0] == "db":
        return [*out, ("anyNormal",), target]
    _, db, coll = target
    if not coll.startswith("system."):
        out += [("anyNormal",), ("db", db)]
    return [*out, ("coll", coll), target]


def authorized(privileges: list[Privilege], target: Resource, actions: Iterable[str]) -> bool:
    """Given a user's privileges, return whether they allow every action on `target`."""
    wanted = set(actions)
    patterns = _search_list(target)
    have: set[str] = set()
    for resource, acts in privileges:
        if resource in patterns:
            if ANY_ACTION in acts:
                return True
            have |= acts
    return wanted <= have


def universal(privileges: list[Privilege]) -> bool:
    """RoleGraph::generateUniversalPrivileges: anyAction on anyResource (only __system or a
    user-defined role granting exactly that, like Juju 2.x's `oploger`)."""
    return any(r == ("any",) and ANY_ACTION in a for r, a in privileges)


def ns_resource(db: str, coll: str) -> Resource:
    """The exact-namespace resource of db.coll."""
    return ("ns", db, coll)


# --------------------------------------------------------------------------- applyOps


def applyops_required(version: str, privileges: list[Privilege], cmd: dict,
                      command_check: Callable[[str, dict], bool]) -> bool:
    """Given the server version, the user's privileges, an applyOps command and a check of a nested
    command's own privileges (db, command document), return whether the user may run it.

    Before 3.6 (the 3.2 branch, src/mongo/db/commands/apply_ops.cpp addRequiredPrivileges and
    apply_ops_cmd_common.cpp checkAuthForApplyOpsCommand, both 3.2-branch versions read): "applyOps can
    do pretty much anything, so require all privileges" - anyAction on anyResource, whatever the ops
    (stricter than the 3.4 code, which checks op by op). From 3.6 (oplog_application_checks.cpp,
    4.0 and 4.4 versions read): an empty applyOps, or a batch of more than one op holding a `create` or
    `renameCollection`, needs all privileges (kNeedsSuperuser); an op with a UUID (`ui`, or a BinData
    UUID at the top of the op or of a command's `o`) needs useUUID on the cluster, plus forceUUID for a
    create (kNeedsUseUUID / kNeedsForceAndUseUUID); then each op: `n` appendOplogNote on the cluster,
    `i` insert, `u` update + insert (alwaysUpsert defaults to true), `d` remove on its namespace, `c`
    its command's own check, `db` anyAction on anyResource."""
    if universal(privileges):
        return True
    ops = cmd.get("applyOps")
    if not isinstance(ops, list):
        return False
    if version_tuple(version) < (3, 6):
        return False
    if not _validity_ok(privileges, ops, 0):
        return False
    always_upsert = bool(cmd.get("alwaysUpsert", True))
    return all(_op_ok(privileges, op, always_upsert, command_check) for op in ops)


def _has_uuid(op: dict) -> bool:
    def top(d: dict) -> bool:
        return any(isinstance(v, bson.Binary) and v.subtype == 4 for v in d.values())
    return top(op) or (op.get("op") == "c" and isinstance(op.get("o"), dict) and top(op["o"]))


def _first(op: dict) -> str | None:
    o = op.get("o")
    return next(iter(o), None) if op.get("op") == "c" and isinstance(o, dict) else None


def _validity_ok(privileges: list[Privilege], ops: list, depth: int) -> bool:
    if not ops:
        return False  # kNeedsSuperuser, and the caller holds no universal privilege
    if len(ops) > 1 and any(isinstance(o, dict) and _first(o) in ("create", "renameCollection") for o in ops):
        return False
    for op in ops:
        if not isinstance(op, dict):
            return False
        if _has_uuid(op):
            needs = {"useUUID", "forceUUID"} if _first(op) == "create" else {"useUUID"}
            if not authorized(privileges, CLUSTER, needs):
                return False
        nested = op["o"].get("applyOps") if _first(op) == "applyOps" else None
        if nested is not None and (depth >= 10 or not _validity_ok(privileges, nested or [], depth + 1)):
            return False
    return True


def _op_ok(privileges: list[Privilege], op: Any, always_upsert: bool,
           command_check: Callable[[str, dict], bool]) -> bool:
    if not isinstance(op, dict):
        return False
    kind = op.get("op")
    if kind == "n":
        return authorized(privileges, CLUSTER, {"appendOplogNote"})
    db, _, coll = str(op.get("ns", "")).partition(".")
    o = op.get("o")
    if not isinstance(o, dict):
        return False
    if kind == "c":
        return command_check(db, o)
    target = ns_resource(db, coll)
    if kind == "i":
        return authorized(privileges, target, {"insert"})
    if kind == "u":
        upsert = bool(op.get("b")) or always_upsert
        return authorized(privileges, target, {"update", "insert"} if upsert else {"update"})
    if kind == "d":
        return authorized(privileges, target, {"remove"})
    return universal(privileges)  # "db" and anything else


def version_tuple(version: str) -> tuple[int, ...]:
    """Given "X.Y.Z", return (X, Y, Z)."""
    return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())


# --------------------------------------------------------------------------- the refusal


def unauthorized_message(db: str, cmd: dict, with_db: bool) -> str:
    """The server's refusal: "not authorized on <db> to execute command <cmd>", the command printed
    as BSONObj::toString prints it (with the `$db` field OP_MSG adds, from 3.6 on)."""
    shown = dict(cmd)
    for secret in ("pwd", "password"):
        if secret in shown:
            shown[secret] = "xxx"  # redactForLogging / snipForLogging
    if with_db:
        shown["$db"] = db
    return f"not authorized on {db} to execute command {bson_text(shown)}"


def bson_text(v: Any) -> str:
    """BSONObj::toString's spelling of a value (an approximation good for the values the lab uses)."""
    if isinstance(v, dict):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{k}: {bson_text(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[ " + ", ".join(bson_text(x) for x in v) + " ]" if v else "[]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, bson.Timestamp):
        return f"Timestamp({v.time}, {v.inc})"
    if isinstance(v, bson.ObjectId):
        return f"ObjectId('{v}')"
    if isinstance(v, bson.Binary):
        return f"BinData({v.subtype}, {bytes(v).hex().upper()})"
    if isinstance(v, uuid.UUID):
        return f'UUID("{v}")'
    if isinstance(v, datetime.datetime):
        return f"new Date({int(v.timestamp() * 1000)})"
    return str(v)
