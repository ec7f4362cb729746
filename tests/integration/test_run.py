"""run --config against two labs (one juju-2.9, one juju-2.8 controller), through the CLI (issue 17:
create -> copy into a local store, an age-encrypted local store and an age-encrypted S3 store (a
standalone moto_server on loopback, tests/lab/s3server.py) -> verify -> prune on both; with one
powered off the other finishes, exit 9, and the metrics file says so)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from jujubackup.archive import verify_archive
from tests.integration.test_create import catalog_ids, jb, jujubackup_bin
from tests.lab.s3server import S3Server, s3_server

pytestmark = pytest.mark.lab


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([jujubackup_bin(), *args], capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL, check=False)


def sample(text: str, name: str, **labels: str) -> float | None:
    """Return the value of metric `name` with exactly these labels in a textfile, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"jujubackup_{name}{{{want}}}" if want else f"jujubackup_{name}"
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return None


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path / "s3") as server:
        yield server


def s3_objects(s3: S3Server) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="fleet/")
    return sorted(o["Key"].removeprefix("fleet/") for o in listed.get("Contents", []))


def test_run_two_controllers_then_one_powered_off(lab_factory: Any, tmp_path: Path, s3: S3Server) -> None:
    lab29 = lab_factory(controllers=1, profile="juju-2.9")
    lab28 = lab_factory(controllers=1, profile="juju-2.8")
    store, vault, key = tmp_path / "store", tmp_path / "vault", tmp_path / "age.key"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                               text=True).stdout.strip()
    config = tmp_path / "fleet.yaml"
    config.write_text(f"""\
parallel: 2
defaults:
  retention: {{keep-last: 2}}
  store-retention: {{keep-last: 1}}
  ssh: {{connect-timeout: 5}}
controllers:
  c29:
    hosts: [ctl0]
    ssh: {{config: {lab29.ssh_config}}}
  c28:
    hosts: [ctl0]
    mode: quiesce
    ssh: {{config: {lab28.ssh_config}}}
stores:
  local: {{kind: local, path: {store}}}
  vault: {{kind: local, path: {vault}, encrypt-to: [{recipient}]}}
""" + s3.store_yaml("offsite", prefix="fleet/", encrypt_to=[recipient]))
    checked = run("config", "check", str(config), "--format", "json")
    assert checked.returncode == 0, checked.stderr
    # two older backups on the 2.9 controller: keep-last 2 prunes the oldest after the run's backup
    older = []
    for notes in ("old-1", "old-2"):
        made = jb(lab29, "create", notes)
        assert made.returncode == 0, made.stderr
        older.append(made.stdout.strip())
        time.sleep(1.1)  # IDs have one-second resolution
    metrics_file = tmp_path / "jujubackup.prom"

    first = run("run", "--config", str(config), "--metrics-file", str(metrics_file), "--format", "json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["result"] == "ok" and doc["exit-code"] == 0 and doc["failed"] == []
    by_name = {c["controller"]: c for c in doc["controllers"]}
    new29, new28 = by_name["c29"]["backup"], by_name["c28"]["backup"]
    assert catalog_ids(lab29.host("ctl0")) == sorted([older[1], new29])  # older[0] pruned
    assert by_name["c29"]["pruned"] == [older[0]] and by_name["c28"]["pruned"] == []
    assert catalog_ids(lab28.host("ctl0")) == [new28]
    for backup_id in (new29, new28):  # copies in both stores, verified, with their sidecars
        copy = store / f"{backup_id}.tar.gz"
        assert verify_archive(copy).ok
        sidecar = json.loads((store / f"{backup_id}.json").read_text())
        assert sidecar["ID"] == backup_id
        assert copy.stat().st_mode & 0o777 == 0o600
        # the encrypted copy: the standard age CLI decrypts it to the very archive (its recorded SHA-256)
        sealed = vault / f"{backup_id}.tar.gz.age"
        plain = subprocess.run(["age", "-d", "-i", str(key), str(sealed)], check=True,
                               capture_output=True).stdout
        assert hashlib.sha256(plain).hexdigest() == sidecar["sha256"]
        assert plain == copy.read_bytes()
        assert not (vault / f"{backup_id}.tar.gz").exists()
        # the S3 copy: age too, and its sidecar object
        body = s3.client().get_object(Bucket=s3.bucket, Key=f"fleet/{backup_id}.tar.gz.age")["Body"].read()
        opened = subprocess.run(["age", "-d", "-i", str(key)], input=body, check=True, capture_output=True)
        assert opened.stdout == plain
    assert s3_objects(s3) == sorted(f"{i}{s}" for i in (new29, new28) for s in (".json", ".tar.gz.age"))
    text = metrics_file.read_text()
    assert metrics_file.stat().st_mode & 0o777 == 0o644
    assert sample(text, "run_exit_code") == 0
    for name in ("c29", "c28"):
        assert sample(text, "controller_success", controller=name) == 1
        assert sample(text, "store_success", controller=name, store="local") == 1
        assert sample(text, "store_success", controller=name, store="vault") == 1
        assert sample(text, "store_success", controller=name, store="offsite") == 1
        assert sample(text, "controller_backup_size_bytes", controller=name) == by_name[name]["size"]
    first_success = sample(text, "controller_last_success_timestamp_seconds", controller="c28")
    assert first_success is not None
    assert not list(tmp_path.glob(".jujubackup.prom.*"))  # no temp file left

    # an S3 store with a wrong secret: the copy fails (exit 3), nothing is pruned or deleted
    wrong = tmp_path / "wrong.credentials"
    wrong.write_text(f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = nope\n")
    wrong.chmod(0o600)
    bad_config = tmp_path / "wrong.yaml"
    bad_config.write_text(f"""\
defaults: {{retention: {{keep-last: 1}}, store-retention: {{keep-last: 1}}}}
controllers:
  c29: {{hosts: [ctl0], ssh: {{config: {lab29.ssh_config}}}}}
stores:
""" + s3.store_yaml("offsite", prefix="fleet/", credentials_file=wrong))
    before = catalog_ids(lab29.host("ctl0"))
    refused = run("run", "--config", str(bad_config), "--format", "json")
    assert refused.returncode == 3, refused.stderr
    (row,) = json.loads(refused.stdout)["controllers"]
    assert (row["stage"], row["exit-code"], row["pruned"]) == ("copy", 3, [])
    assert row["stores"][0]["ok"] is False and row["stores"][0]["error"]
    assert set(before) < set(catalog_ids(lab29.host("ctl0")))  # the new backup stays, nothing pruned
    assert s3_objects(s3) == sorted(f"{i}{s}" for i in (new29, new28) for s in (".json", ".tar.gz.age"))
    # a config with an unknown key: exit 2, nothing runs
    typo = tmp_path / "typo.yaml"
    typo.write_text(config.read_text().replace("parallel: 2", "paralel: 2"))
    assert (failed := run("run", "--config", str(typo))).returncode == 2
    assert f"{typo}:1: paralel: unknown key" in failed.stderr

    # the 2.8 controller powered off: the 2.9 one finishes; exit 9; the metrics say which failed
    lab28.host("ctl0").power_off()
    second = run("run", "--config", str(config), "--metrics-file", str(metrics_file))
    assert second.returncode == 9, second.stderr
    assert re.search(r"1 of 2 controller\(s\) failed: c28 at create \(exit 3\)", second.stderr)
    row29 = next(line for line in second.stdout.splitlines() if line.startswith("c29"))
    row28 = next(line for line in second.stdout.splitlines() if line.startswith("c28"))
    assert " ok " in row29 and "FAILED (create, exit 3)" in row28
    # keep-last 2: the refused pass's backup and this one's
    assert len(catalog_ids(lab29.host("ctl0"))) == 2 and new29 not in catalog_ids(lab29.host("ctl0"))
    # store-retention keep-last 1: c29's first copy pruned from both stores, c28's (failed at create) kept
    newest29 = max(i for i in catalog_ids(lab29.host("ctl0")))
    assert sorted(p.name for p in store.glob("*.tar.gz")) == sorted(f"{i}.tar.gz" for i in (newest29, new28))
    assert sorted(p.name for p in vault.glob("*.age")) == sorted(f"{i}.tar.gz.age" for i in (newest29, new28))
    assert s3_objects(s3) == sorted(f"{i}{s}" for i in (newest29, new28) for s in (".json", ".tar.gz.age"))
    text = metrics_file.read_text()
    assert sample(text, "run_exit_code") == 9
    assert sample(text, "controller_success", controller="c29") == 1
    assert sample(text, "controller_success", controller="c28") == 0
    assert sample(text, "controller_exit_code", controller="c28") == 3
    assert sample(text, "controller_last_success_timestamp_seconds", controller="c28") == first_success
    assert sample(text, "controller_backup_size_bytes", controller="c28") is None
    assert sample(text, "store_success", controller="c28", store="local") is None  # never reached
    kept = sample(text, "store_last_success_timestamp_seconds", controller="c28", store="local")
    assert kept == first_success

    # the YAML summary of a pass where every controller fails the same way: their common exit code (3)
    lab29.host("ctl0").power_off()
    third = run("run", "--config", str(config), "--format", "yaml")
    assert third.returncode == 3, third.stderr
    summary = YAML(typ="safe", pure=True).load(third.stdout)
    assert summary["result"] == "failed" and summary["failed"] == ["c29", "c28"]
    assert [c["exit-code"] for c in summary["controllers"]] == [3, 3]
