"""The API stand-in's user side (tests/lab/standins/clientapi.py) against a seeded database, run
locally: the login Juju's state/user.go PasswordValid would accept, and only read-only calls."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tests.lab import provision
from tests.lab.standins import clientapi


def _db(cluster: provision.Cluster) -> dict[str, list[dict]]:
    return provision.seed_documents(cluster)["juju"]


def _find(db: dict[str, list[dict]]) -> clientapi.Find:
    def find(coll: str, filt: dict) -> list[dict]:
        def match(doc: dict) -> bool:
            for k, v in filt.items():
                if isinstance(v, dict) and "$in" in v:
                    if doc.get(k) not in v["$in"]:
                        return False
                elif doc.get(k) != v:
                    return False
            return True
        return [d for d in db.get(coll, []) if match(d)]
    return find


@pytest.fixture()
def cluster() -> provision.Cluster:
    ctl = provision.HostSpec(name="ctl0", ip="10.201.0.10", role="controller", machine_id="0",
                             profile="juju-2.9")
    m0 = provision.HostSpec(name="m0", ip="10.201.0.11", role="workload", machine_id="1", profile="juju-2.9")
    return provision.new_cluster("juju-2.9", [ctl], workloads=[m0])


def _login(cluster: provision.Cluster, db: dict, password: str, tag: str = "user-admin",
           model: str | None = None) -> Any:
    return clientapi.check_user_login(_find(db), model, {"auth-tag": tag, "credentials": password})


def test_user_password_hash_is_pbkdf2_sha512_8192_18_bytes() -> None:
    # juju/utils password.go UserPasswordHash: 18 bytes -> 24 base64 characters, no padding
    got = clientapi.user_password_hash("secret", "c2FsdHNhbHRzYWx0")
    want = hashlib.pbkdf2_hmac("sha512", b"secret", b"c2FsdHNhbHRzYWx0", 8192, 18)
    assert len(got) == 24 and "=" not in got
    assert got == base64.b64encode(want).decode()
    with pytest.raises(ValueError):
        clientapi.user_password_hash("secret", "")


def test_the_seeded_admin_logs_in_with_the_lab_password_only(cluster: provision.Cluster) -> None:
    db = _db(cluster)
    doc = _login(cluster, db, cluster.admin_password)
    assert isinstance(doc, dict) and doc["_id"] == "admin"
    assert _login(cluster, db, cluster.admin_password, tag="user-admin@local")["_id"] == "admin"
    assert _login(cluster, db, cluster.admin_password + "x") == clientapi.BAD_CREDS
    assert _login(cluster, db, "") == clientapi.BAD_CREDS
    assert _login(cluster, db, cluster.admin_password, tag="user-bob") == clientapi.BAD_CREDS
    # an external user (a domain other than local) has no password in the users collection
    assert _login(cluster, db, cluster.admin_password, tag="user-admin@external") == clientapi.BAD_CREDS
    assert _login(cluster, db, cluster.admin_password, model="0" * 8 + "-0000-0000-0000-" + "0" * 12)[1] == (
        "model not found")


@pytest.mark.parametrize("change", [{"deactivated": True}, {"deleted": True}, {"passwordsalt": ""}])
def test_a_disabled_deleted_or_unsalted_user_is_refused(cluster: provision.Cluster, change: dict) -> None:
    db = _db(cluster)
    db["users"][0].update(change)
    assert _login(cluster, db, cluster.admin_password) == clientapi.BAD_CREDS


def test_a_session_serves_reads_and_refuses_everything_else(cluster: provision.Cluster) -> None:
    db = _db(cluster)
    user = _login(cluster, db, cluster.admin_password)
    ctrl = clientapi.UserSession(_find(db), {"controller": f"controller-{cluster.controller_uuid}"}, None,
                                 user, "2.9.42-focal-amd64")
    listed = ctrl.handle({"type": "ModelManager", "version": 5, "request": "ListModels",
                          "params": {"tag": "user-admin"}})
    assert [m["model"]["name"] for m in listed["user-models"]] == ["controller", "default"]
    with pytest.raises(clientapi.RPCError) as err:
        ctrl.handle({"type": "ModelManager", "version": 5, "request": "CreateModel", "params": {}})
    assert err.value.code == "not implemented"
    with pytest.raises(clientapi.RPCError) as err:
        ctrl.handle({"type": "Application", "version": 13, "request": "Deploy", "params": {}})
    assert err.value.code == "not implemented" and 'unknown object type "Application"' in err.value.message
    with pytest.raises(clientapi.RPCError):
        ctrl.handle({"type": "ModelManager", "version": 9, "request": "ListModels", "params": {}})
    model = clientapi.UserSession(_find(db), {}, cluster.model_uuid, user, "2.9.42-focal-amd64")
    wid = model.handle({"type": "Client", "version": 2, "request": "WatchAll"})["watcher-id"]
    first = model.handle({"type": "AllWatcher", "version": 1, "request": "Next", "id": wid, "request-id": 7})
    assert [d[2]["id"] for d in first["deltas"] if d[0] == "machine"] == ["0", "1"]
    assert first["deltas"][0][2]["has-vote"] is True and first["deltas"][0][2]["jobs"] == [
        "JobManageModel", "JobHostUnits"]
    blocked = {"type": "AllWatcher", "version": 1, "request": "Next", "id": wid, "request-id": 8}
    assert model.handle(blocked) is None
    stop = {"type": "AllWatcher", "version": 1, "request": "Stop", "id": wid}
    assert model.handle(stop) == {} and model.stopped_next(stop) == 8
    info = model.handle({"type": "Client", "version": 2, "request": "ModelInfo"})
    assert info["uuid"] == cluster.model_uuid and info["is-controller"] is True
    with pytest.raises(clientapi.RPCError):  # a controller call on a model connection
        model.handle({"type": "ModelManager", "version": 5, "request": "ListModels",
                      "params": {"tag": "user-admin"}})


def test_a_3x_controller_serves_the_3x_facades_only(cluster: provision.Cluster) -> None:
    db = _db(cluster)
    user = _login(cluster, db, cluster.admin_password)
    ctrl = clientapi.UserSession(_find(db), {}, None, user, "3.6.21-ubuntu-amd64")
    facades = {f["name"]: f["versions"] for f in clientapi.login_result(
        _find(db), {}, None, user, "3.6.21-ubuntu-amd64")["facades"]}
    assert facades["ModelManager"] == [9, 10] and facades["Client"] == [6, 7, 8]
    summaries = ctrl.handle({"type": "ModelManager", "version": 10, "request": "ListModelSummaries",
                             "params": {"user-tag": "user-admin", "all": False}})
    assert [r["result"]["name"] for r in summaries["results"]] == ["controller", "default"]
    info = ctrl.handle({"type": "ModelManager", "version": 10, "request": "ModelInfo",
                        "params": {"entities": [{"tag": f"model-{cluster.default_model_uuid}"}]}})
    assert info["results"][0]["result"]["name"] == "default"
    with pytest.raises(clientapi.RPCError):  # a 2.x version on a 3.x controller
        ctrl.handle({"type": "ModelManager", "version": 5, "request": "ListModels",
                     "params": {"tag": "user-admin"}})
    model = clientapi.UserSession(_find(db), {}, cluster.model_uuid, user, "3.6.21-ubuntu-amd64")
    with pytest.raises(clientapi.RPCError) as err:
        model.handle({"type": "Client", "version": 8, "request": "ModelInfo"})
    assert err.value.code == "not implemented"
