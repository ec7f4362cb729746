"""Stand-in for the Juju API server's side of a CLIENT (a user, not an agent): Admin.Login v3 as a
local user and the read-only calls python-libjuju 2.9.49.1 makes to connect with a controllers.yaml /
accounts.yaml, list the models and list the machines of a model (Juju 2.8.10 / 2.9.42 as the
lab's profiles name them). Served by api.serve on `/api` (controller) and `/model/<uuid>/api`.
Test code, never shipped.

What libjuju 2.9.49.1 calls (juju/controller.py, juju/model.py, juju/client/connection.py,
juju/client/overrides.py at that version):
  Controller.connect(name)    Admin.Login v3 on /api; then update_endpoints -> info():
                              ModelManager.ListModels {tag} and Controller.ControllerAPIInfoForModels
  Controller.list_models()    ModelManager.ListModels {tag}
  Controller.get_model(name)  ModelManager.ListModels, then Admin.Login v3 on /model/<uuid>/api;
                              Model._after_connect: ModelConfig.ModelGet, Client.WatchAll,
                              AllWatcher.Next (the first answer holds the whole model; the next one
                              blocks), Client.ModelInfo; disconnect: AllWatcher.Stop
  every connection            Pinger.Ping every 10 s
  connector.connect_model     Controller.AllModels (when models.yaml lacks the model)
  Model.applications, .units  the "application" and "unit" deltas of that first AllWatcher.Next
Each call below names the Juju apiserver code it imitates. Anything else is refused as Juju's RPC
layer refuses an unknown facade, method or version (rpc/rpcreflect: "not implemented"), and a
write is never served: STRICTER than Juju, which would do it for an admin.

Login (apiserver/admin.go doLogin -> authentication/user.go LocalUserAuthenticator.Authenticate ->
state/user.go PasswordValid at juju-2.9.42): the user `user-NAME` (local: no domain, or @local) has
a `users` document `_id` NAME lower-cased, is not `deactivated` nor `deleted`, has a
`passwordsalt`, and juju/utils password.go UserPasswordHash(password, salt) -
base64(pbkdf2(sha512, password, salt, 8192 iterations, 18 bytes)) - equals `passwordhash`; else
"invalid entity name or password (unauthorized access)". STRICTER than Juju: only the owner of the
controller model (the user `juju bootstrap` made, a controller superuser: state/initialize.go) logs
in; Juju would also take users granted access in `permissions`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

USER_TAG_RE = re.compile(r"^user-([a-zA-Z0-9][a-zA-Z0-9.+-]*?)(@local)?$")
BAD_CREDS = ("invalid entity name or password (unauthorized access)", "unauthorized access")
LIFE = {0: "alive", 1: "dying", 2: "dead"}
JOBS = {1: "JobHostUnits", 2: "JobManageModel"}  # state/machine.go MachineJob values

# The facade versions served to a user: each is a version Juju 2.8.10 and 2.9.42 register
# (apiserver/allfacades.go) and one libjuju 2.9.49.1 knows (juju/client/connection.py client_facades);
# libjuju picks the highest common one. Only these versions are answered.
USER_FACADES: dict[str, list[int]] = {
    "AllWatcher": [1],
    "Client": [1, 2],
    "Controller": [3, 4, 5],
    "ModelConfig": [1, 2],
    "ModelManager": [2, 3, 4, 5],
    "Pinger": [1],
}
# Juju 3.x (3.6.x): the versions libjuju 3.6.1.3 pins for a 3.x controller (juju/client/
# facade_versions.py client_facade_versions, generated from Juju 3.x's API schema). On 3.x libjuju
# lists models with ModelManager.ListModelSummaries and reads a model's info with
# ModelManager.ModelInfo on a controller connection (juju/controller.py model_uuids,
# get_model_info; juju/model/__init__.py _after_connect); Client.ModelInfo is not served there
# (STRICTER: libjuju 3 does not call it).
USER_FACADES_3: dict[str, list[int]] = {
    "AllWatcher": [3],
    "Client": [6, 7, 8],
    "Controller": [11, 12],
    "ModelConfig": [3],
    "ModelManager": [9, 10],
    "Pinger": [1],
}


def facades_for(version: str) -> dict[str, list[int]]:
    """Given the server's version (2.9.42-focal-amd64, 3.6.x), return the facade versions served."""
    return USER_FACADES_3 if version.split(".", 1)[0] == "3" else USER_FACADES

Find = Callable[[str, dict], list[dict]]


class RPCError(Exception):
    """An error reply: message and code as Juju's rpc layer sends them (params.Error)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message, self.code = message, code


def user_password_hash(password: str, salt: str) -> str:
    """Return juju/utils UserPasswordHash: base64 of pbkdf2(sha512, password, salt, 8192, 18 bytes).
    Raise ValueError for an empty salt (Juju panics)."""
    if not salt:
        raise ValueError("salt is not allowed to be empty")
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt.encode(), 8192, 18)
    return base64.b64encode(key).decode()


def is_user_tag(tag: str) -> bool:
    """Return True if `tag` names a user (user-NAME), not an agent."""
    return tag.startswith("user-")


def check_user_login(find: Find, model_uuid: str | None, params: dict[str, Any]) -> tuple[str, str] | dict:
    """Given a database reader, the URL's model (None on /api) and Login params, return the user's
    document when the login is good, else (error message, error code) as apiserver/admin.go does."""
    if model_uuid is not None and not find("models", {"_id": model_uuid}):
        return (f'unknown model: "{model_uuid}" (model not found)', "model not found")
    m = USER_TAG_RE.match(str(params.get("auth-tag", "")))
    password = params.get("credentials")
    if not m or not isinstance(password, str) or not password:
        return BAD_CREDS
    name = m.group(1).lower()
    docs = find("users", {"_id": name})
    if not docs:
        return BAD_CREDS
    doc = docs[0]
    salt = doc.get("passwordsalt") or ""
    if doc.get("deactivated") or doc.get("deleted") or not salt:
        return BAD_CREDS
    if user_password_hash(password, str(salt)) != doc.get("passwordhash"):
        return BAD_CREDS
    ctrl = find("controllers", {"_id": "e"})
    owner_models = find("models", {"_id": ctrl[0].get("model-uuid")}) if ctrl else []
    if not owner_models or str(owner_models[0].get("owner", "")).lower() != name:
        return ("permission denied (unauthorized access)", "unauthorized access")
    return doc


def login_result(find: Find, conf: dict[str, Any], model_uuid: str | None, user: dict, version: str) -> dict:
    """Return params.LoginResult for a good user login (apiserver/admin.go doLogin: servers from
    apiHostPorts, the model and controller tags, user-info, the facades, server-version)."""
    return {
        "servers": _host_ports(find, with_local=True),
        "model-tag": f"model-{model_uuid}" if model_uuid else "",
        "controller-tag": conf.get("controller", ""),
        "user-info": {
            "display-name": user.get("displayname", ""),
            "identity": f"user-{user.get('name', user['_id'])}",
            "controller-access": "superuser",
            "model-access": "admin" if model_uuid else "",
        },
        "facades": [{"name": n, "versions": v} for n, v in sorted(facades_for(version).items())],
        "server-version": version.split("-")[0],
    }


def _host_ports(find: Find, with_local: bool) -> list[list[dict]]:
    docs = find("controllers", {"_id": "apiHostPorts"})
    servers = docs[0].get("apihostports") or [] if docs else []
    out = []
    for server in servers:
        hps = [{"value": hp.get("value"), "type": hp.get("addresstype", "ipv4"),
                "scope": hp.get("networkscope", ""), "port": int(hp.get("port", 17070))}
               for hp in server if with_local or hp.get("networkscope") != "local-machine"]
        out.append(hps)
    return out


class UserSession:
    """The read-only calls of one logged-in user's connection (model_uuid None: the controller)."""

    def __init__(self, find: Find, conf: dict[str, Any], model_uuid: str | None, user: dict,
                 version: str) -> None:
        self.find, self.conf, self.model_uuid, self.user, self.version = find, conf, model_uuid, user, version
        self.watchers: dict[str, bool] = {}  # AllWatcher id -> first Next answered
        self.pending_next: dict[str, Any] = {}  # AllWatcher id -> request-id of a blocked Next

    def handle(self, msg: dict[str, Any]) -> dict[str, Any] | None:
        """Given a request, return the response body; None when the reply waits (a blocked
        AllWatcher.Next). Raise RPCError for what Juju would refuse or this stand-in does not serve."""
        kind, req, version = msg.get("type"), msg.get("request"), msg.get("version")
        served = facades_for(self.version)
        if kind not in served:
            raise RPCError(f'unknown object type "{kind}" (not implemented)', "not implemented")
        if version not in served[str(kind)]:
            raise RPCError(f'unknown version ({version}) of interface "{kind}" (not implemented)',
                           "not implemented")
        method = getattr(self, f"_{kind}_{req}", None)
        if method is None:
            raise RPCError(f"no such request - method {kind}({version}).{req} is not implemented "
                           "(not implemented)", "not implemented")
        return method(msg)

    # -- Pinger (apiserver/pinger.go Ping: no result)
    def _Pinger_Ping(self, msg: dict) -> dict:
        return {}

    # -- ModelManager (apiserver/facades/client/modelmanager/modelmanager.go ListModels: the models
    # the user can see; the tag must be the caller's own unless a superuser asks)
    def _ModelManager_ListModels(self, msg: dict) -> dict:
        self._controller_only()
        tag = str((msg.get("params") or {}).get("tag", ""))
        if tag.lower() not in (f"user-{self.user['_id']}", f"user-{self.user['_id']}@local"):
            raise RPCError("permission denied (unauthorized access)", "unauthorized access")
        return {"user-models": self._user_models()}

    def _ModelManager_ListModelSummaries(self, msg: dict) -> dict:
        """ListModelSummaries (v4+; libjuju 3 lists models with it): a summary of each model the
        user can see, for the caller's own `user-tag` unless a superuser asks."""
        self._controller_only()
        tag = str((msg.get("params") or {}).get("user-tag", ""))
        if tag.lower() not in (f"user-{self.user['_id']}", f"user-{self.user['_id']}@local"):
            raise RPCError("permission denied (unauthorized access)", "unauthorized access")
        results = []
        for um in self._user_models():
            info = self._model_info(um["model"]["uuid"])
            summary = {k: info[k] for k in ("name", "uuid", "type", "controller-uuid", "is-controller",
                                             "provider-type", "cloud-tag", "cloud-region",
                                             "cloud-credential-tag", "owner-tag", "life", "status",
                                             "agent-version")}
            results.append({"result": {**summary, "user-access": "admin", "user-last-connection": None,
                                       "counts": [{"entity": "machines",
                                                   "count": len(info["machines"])}]}})
        return {"results": results}

    def _ModelManager_ModelInfo(self, msg: dict) -> dict:
        """ModelInfo (modelmanager.go): params.ModelInfo of each model tag asked for."""
        self._controller_only()
        results: list[dict] = []
        for entity in (msg.get("params") or {}).get("entities") or []:
            uuid = str(entity.get("tag", "")).removeprefix("model-")
            if not self.find("models", {"_id": uuid}):
                results.append({"error": {"message": f'model "{uuid}" not found', "code": "not found"}})
            else:
                results.append({"result": self._model_info(uuid)})
        return {"results": results}

    # -- Controller (apiserver/facades/client/controller/controller.go)
    def _Controller_AllModels(self, msg: dict) -> dict:
        """AllModels: every model of the controller (superusers only)."""
        self._controller_only()
        return {"user-models": self._user_models()}

    def _Controller_ControllerAPIInfoForModels(self, msg: dict) -> dict:
        """ControllerAPIInfoForModels: for each model tag, the controller's API addresses (machine-local
        ones left out) and the CA certificate from controller config `ca-cert`."""
        self._controller_only()
        results = []
        for entity in (msg.get("params") or {}).get("entities") or []:
            uuid = str(entity.get("tag", "")).removeprefix("model-")
            if not self.find("models", {"_id": uuid}):
                results.append({"error": {"message": f'model "{uuid}" not found', "code": "not found"}})
                continue
            addrs = [f"{hp['value']}:{hp['port']}" for srv in _host_ports(self.find, with_local=False)
                     for hp in srv]
            results.append({"addresses": addrs, "cacert": self._ca_cert()})
        return {"results": results}

    # -- ModelConfig (apiserver/facades/client/modelconfig/modelconfig.go ModelGet: every key of the
    # model's settings document `<uuid>:e` with its source)
    def _ModelConfig_ModelGet(self, msg: dict) -> dict:
        settings = self._settings()
        return {"config": {k: {"value": v, "source": "model"} for k, v in sorted(settings.items())}}

    # -- Client (apiserver/facades/client/client/client.go WatchAll, ModelInfo)
    def _Client_WatchAll(self, msg: dict) -> dict:
        uuid = self._model_only()
        wid = str(len(self.watchers) + 1)
        self.watchers[wid] = False
        del uuid
        return {"watcher-id": wid}

    def _Client_ModelInfo(self, msg: dict) -> dict:
        if int(msg.get("version") or 0) > 2:
            raise RPCError(f"no such request - method Client({msg.get('version')}).ModelInfo is not "
                           "implemented (not implemented)", "not implemented")
        return self._model_info(self._model_only())

    def _model_info(self, uuid: str) -> dict:
        """params.ModelInfo of a model, from its models and settings documents."""
        model = self.find("models", {"_id": uuid})[0]
        ctrl = self.find("controllers", {"_id": "e"})
        settings = self._settings(uuid)
        owner = str(model.get("owner", ""))
        return {
            "name": model.get("name", ""),
            "type": model.get("type", "iaas"),
            "uuid": uuid,
            "controller-uuid": str(self.conf.get("controller", "")).removeprefix("controller-"),
            "is-controller": bool(ctrl and ctrl[0].get("model-uuid") == uuid),
            "provider-type": settings.get("type", ""),
            "default-series": settings.get("default-series", ""),
            "cloud-tag": f"cloud-{model.get('cloud', '')}",
            "cloud-region": model.get("cloud-region", ""),
            "cloud-credential-tag": "cloudcred-" + str(model.get("cloud-credential", "")).replace("/", "_"),
            "owner-tag": f"user-{owner}",
            "life": LIFE.get(int(model.get("life", 0)), "alive"),
            "status": {"status": "available", "info": "", "since": None},
            "users": [{"user": f"user-{owner}", "display-name": owner, "access": "admin",
                       "last-connection": None}],
            "machines": [{"id": m.get("machineid")} for m in self._machines(uuid)],
            "agent-version": settings.get("agent-version", self.version.split("-")[0]),
        }

    # -- AllWatcher (apiserver/allwatcher.go SrvAllWatcher Next / Stop): the first Next answers the
    # whole model as deltas (core/multiwatcher MachineInfo, ApplicationInfo, UnitInfo); a later Next blocks
    # until something changes (nothing does here) or the watcher stops: Stop answers the blocked Next
    # with "watcher was stopped" (apiserver/common ErrStoppedf -> code "stopped").
    def _AllWatcher_Next(self, msg: dict) -> dict | None:
        uuid = self._model_only()
        wid = str(msg.get("id") or msg.get("Id") or "")
        if wid not in self.watchers:
            raise RPCError(f'unknown watcher id "{wid}" (not found)', "not found")
        if self.watchers[wid]:
            self.pending_next[wid] = msg.get("request-id")
            return None
        self.watchers[wid] = True
        deltas = [["machine", "change", self._machine_info(uuid, m)] for m in self._machines(uuid)]
        apps = self.find("applications", {"model-uuid": uuid})
        deltas += [["application", "change", self._application_info(uuid, a)]
                   for a in sorted(apps, key=lambda a: str(a.get("name")))]
        units = self.find("units", {"model-uuid": uuid})
        deltas += [["unit", "change", self._unit_info(uuid, u, apps)]
                   for u in sorted(units, key=lambda u: str(u.get("name")))]
        return {"deltas": deltas}

    def _AllWatcher_Stop(self, msg: dict) -> dict:
        wid = str(msg.get("id") or msg.get("Id") or "")
        if self.watchers.pop(wid, None) is None:
            raise RPCError(f'unknown watcher id "{wid}" (not found)', "not found")
        return {}

    def stopped_next(self, msg: dict) -> Any:
        """After AllWatcher.Stop, return the request-id of the Next it unblocks (or None)."""
        return self.pending_next.pop(str(msg.get("id") or msg.get("Id") or ""), None)

    # -- helpers
    def _controller_only(self) -> None:
        if self.model_uuid is not None:
            # apiserver/root.go: controller facades are not served on a model connection
            raise RPCError("facade not available on a model connection (not implemented)", "not implemented")

    def _model_only(self) -> str:
        if self.model_uuid is None:
            raise RPCError("facade not available on a controller connection (not implemented)",
                           "not implemented")
        return self.model_uuid

    def _settings(self, uuid: str | None = None) -> dict[str, Any]:
        uuid = uuid or self._model_only()
        docs = self.find("settings", {"_id": f"{uuid}:e"})
        return dict(docs[0].get("settings") or {}) if docs else {}

    def _ca_cert(self) -> str:
        docs = self.find("controllers", {"_id": "controllerSettings"})
        settings = docs[0].get("settings") or {} if docs else {}
        return str(settings.get("ca-cert") or self.conf.get("cacert", ""))

    def _machines(self, uuid: str) -> list[dict]:
        docs = self.find("machines", {"model-uuid": uuid})
        return sorted(docs, key=lambda d: [int(p) if p.isdigit() else p
                                           for p in re.split(r"/", str(d.get("machineid", "")))])

    def _machine_info(self, uuid: str, doc: dict) -> dict:
        """core/multiwatcher.MachineInfo as JSON (params.MachineInfo at 2.8/2.9)."""
        mid = str(doc.get("machineid", ""))
        inst = self.find("instanceData", {"_id": f"{uuid}:{mid}"})
        status = self.find("statuses", {"_id": f"{uuid}:m#{mid}"})
        node = self.find("controllerNodes", {"_id": {"$in": [mid, f"{uuid}:{mid}"]}})
        return {
            "model-uuid": uuid,
            "id": mid,
            "instance-id": inst[0].get("instanceid", "") if inst else "",
            "agent-status": {"current": status[0].get("status", "") if status else "",
                             "message": "", "version": str((doc.get("tools") or {}).get("version", ""))},
            "instance-status": {"current": "running", "message": ""},
            "life": LIFE.get(int(doc.get("life", 0)), "alive"),
            "series": doc.get("series") or "",
            **({"base": {"name": doc["base"].get("os", ""), "channel": doc["base"].get("channel", "")}}
               if isinstance(doc.get("base"), dict) else {}),
            "container-type": doc.get("containertype", ""),
            "supported-containers": doc.get("supportedcontainers") or [],
            "supported-containers-known": bool(doc.get("supportedcontainersknown")),
            "hardware-characteristics": {},
            "jobs": [JOBS.get(int(j), str(j)) for j in doc.get("jobs") or []],
            "addresses": [{"value": a.get("value"), "type": a.get("addresstype", "ipv4"),
                           "scope": a.get("networkscope", "")} for a in doc.get("addresses") or []],
            "has-vote": bool(node and node[0].get("has-vote")),
            "wants-vote": bool(node and node[0].get("wants-vote")),
        }

    def _application_info(self, uuid: str, doc: dict) -> dict:
        """core/multiwatcher.ApplicationInfo as JSON (params.ApplicationInfo at 2.8/2.9)."""
        model = self.find("models", {"_id": uuid})
        return {
            "model-uuid": uuid,
            "name": doc.get("name", ""),
            "exposed": bool(doc.get("exposed")),
            "charm-url": doc.get("charmurl", ""),
            "owner-tag": f"user-{model[0].get('owner', '')}" if model else "",
            "life": LIFE.get(int(doc.get("life", 0)), "alive"),
            "min-units": int(doc.get("minunits", 0)),
            "constraints": {},
            "subordinate": bool(doc.get("subordinate")),
            "status": {"current": "unknown", "message": ""},
            "workload-version": "",
        }

    def _unit_info(self, uuid: str, doc: dict, apps: list[dict]) -> dict:
        """core/multiwatcher.UnitInfo as JSON (params.UnitInfo at 2.8/2.9): addresses from its machine."""
        app = next((a for a in apps if a.get("name") == doc.get("application")), {})
        machine = self.find("machines", {"_id": f"{uuid}:{doc.get('machineid', '')}"})
        address = ((machine[0].get("addresses") or [{}])[0].get("value", "") if machine else "")
        return {
            "model-uuid": uuid,
            "name": doc.get("name", ""),
            "application": doc.get("application", ""),
            "series": doc.get("series", ""),
            "charm-url": app.get("charmurl", ""),
            "life": LIFE.get(int(doc.get("life", 0)), "alive"),
            "public-address": address,
            "private-address": address,
            "machine-id": doc.get("machineid", ""),
            "ports": [],
            "port-ranges": [],
            "principal": doc.get("principal", ""),
            "subordinate": bool(doc.get("principal")),
            "workload-status": {"current": "active", "message": ""},
            "agent-status": {"current": "idle", "message": ""},
        }

    def _user_models(self) -> list[dict]:
        models = [m for m in self.find("models", {}) if int(m.get("life", 0)) != 2]
        return [{"model": {"name": m.get("name", ""), "uuid": m["_id"], "type": m.get("type", "iaas"),
                           "owner-tag": f"user-{m.get('owner', '')}"},
                 "last-connection": None} for m in sorted(models, key=lambda m: str(m.get("name")))]


def dumps(doc: dict[str, Any]) -> str:
    """JSON for a reply (dates from the database as strings)."""
    return json.dumps(doc, default=str)
