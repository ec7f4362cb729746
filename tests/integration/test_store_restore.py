"""Encrypted off-site copies in an S3 store, and a disaster recovery straight from one (issue 17).

The S3 store is a standalone moto_server process on loopback with authentication enforced
(tests/lab/s3server.py); the lab is a controller (juju-2.9, juju-2.8) and a spare. Everything goes through the
CLI as an operator would run it; outcomes are checked on the hosts and in the bucket, and the
copy is opened with the standard `age` CLI.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import LabFactory
from tests.integration.test_restore import active, db_unit, jb, ok
from tests.lab.s3server import S3Server, s3_server

pytestmark = pytest.mark.lab


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    with s3_server(tmp_path / "s3") as server:
        yield server


def keys(tmp_path: Path) -> tuple[str, Path, str, Path]:
    """(age recipient, its identity file, ssh-ed25519 recipient, its private key)."""
    subprocess.run(["age-keygen", "-o", str(tmp_path / "age.key")], check=True, capture_output=True)
    pub = subprocess.run(["age-keygen", "-y", str(tmp_path / "age.key")], check=True, capture_output=True,
                         text=True).stdout.strip()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ops")], check=True)
    return pub, tmp_path / "age.key", (tmp_path / "ops.pub").read_text().strip(), tmp_path / "ops"


@pytest.mark.parametrize("profile", ["juju-2.9", "juju-2.8"])
def test_dr_restore_straight_from_an_encrypted_s3_copy(
    lab_factory: LabFactory, tmp_path: Path, s3: S3Server, profile: str
) -> None:
    lab = lab_factory(controllers=1, spares=1, profile=profile)
    ctl, spare = lab.host("ctl0"), lab.host("spare0")
    age_pub, age_key, ssh_pub, ssh_key = keys(tmp_path)
    bad_creds = tmp_path / "bad.credentials"
    bad_creds.write_text(f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = nope\n")
    bad_creds.chmod(0o600)
    conf = tmp_path / "stores.yaml"
    conf.write_text("stores:\n" + s3.store_yaml("offsite", prefix="lab/", encrypt_to=[age_pub, ssh_pub])
                    + s3.store_yaml("wrongkey", prefix="lab/", credentials_file=bad_creds))
    store = ["--store-config", str(conf)]

    backup_id = ok(jb(lab, "-H", "ctl0", "create")).stdout.strip().splitlines()[-1]
    record = json.loads(ok(jb(lab, "-H", "ctl0", "info", backup_id, "--format", "json")).stdout)
    copied = ok(jb(lab, "-H", "ctl0", "download", backup_id, "--store", "offsite", *store))
    assert copied.stdout.strip() == f"s3://{s3.bucket}/lab/{backup_id}.tar.gz.age"

    # The object is age: the standard CLI opens it with either recipient's key, to the archive
    # whose SHA-256 the catalog, the object's metadata and the sidecar object record.
    obj = s3.client().get_object(Bucket=s3.bucket, Key=f"lab/{backup_id}.tar.gz.age")
    assert obj["Metadata"]["jujubackup-sha256"] == record["sha256"]
    (tmp_path / "copy.age").write_bytes(obj["Body"].read())
    for identity in (age_key, ssh_key):
        plain = subprocess.run(["age", "-d", "-i", str(identity), str(tmp_path / "copy.age")],
                               capture_output=True, check=True).stdout
        assert hashlib.sha256(plain).hexdigest() == record["sha256"] and len(plain) == record["size"]
    side = json.loads(s3.client().get_object(Bucket=s3.bucket, Key=f"lab/{backup_id}.json")["Body"].read())
    assert side["sha256"] == side["stored"]["plain_sha256"] == record["sha256"]
    assert "CAPrivateKey" not in side and side["stored"]["format"] == "age-v1"

    listed = json.loads(ok(jb(lab, "list", "--store", "offsite", *store, "--format", "json")).stdout)
    assert [(c["id"], c["encrypted"], c["complete"]) for c in listed] == [(backup_id, "age", "yes")]
    ok(jb(lab, "verify", backup_id, "--store", "offsite", *store, "--identity", str(ssh_key)))
    wrong = jb(lab, "verify", backup_id, "--store", "offsite", *store, "--identity", str(tmp_path / "other"))
    assert wrong.returncode == 5  # a missing identity file is "not found"
    subprocess.run(["age-keygen", "-o", str(tmp_path / "other")], check=True, capture_output=True)
    wrong = jb(lab, "verify", backup_id, "--store", "offsite", *store, "--identity", str(tmp_path / "other"))
    assert wrong.returncode == 8 and "no identity given opens offsite:" in wrong.stderr
    denied = jb(lab, "list", "--store", "wrongkey", *store)
    assert denied.returncode == 3, denied.stderr
    assert "refused the credentials (SignatureDoesNotMatch)" in denied.stderr
    keys_in_bucket = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="lab/")["KeyCount"]
    assert keys_in_bucket == 2  # nothing deleted by the failures

    # The controller is gone: restore onto the spare straight from the S3 copy.
    ctl.power_off()
    restored = ok(jb(lab, "restore", "--archive", backup_id[:15], "--store", "offsite", *store,
                     "--identity", str(age_key), "--target", spare.name, "--yes", "--no-repoint"))
    assert f"-> {spare.ip}" in restored.stdout
    assert active(spare, db_unit(spare), "jujud-machine-0") == ["active", "active"]
    conf_text = (spare.root / "var/lib/juju/agents/machine-0/agent.conf").read_text()
    assert f"{spare.ip}:17070" in conf_text
    leftovers = [p for p in Path("/tmp").glob("jujubackup-archive-*")]
    assert leftovers == []


def test_drill_of_an_encrypted_copy_in_a_local_store(lab_factory: LabFactory, tmp_path: Path) -> None:
    """download --encrypt-to an ssh-rsa key, then drill --archive FILE.age --identity its private key
    and drill --archive ID --store (the same copy through a local store): every check passes; the
    decrypted archive and the re-addressing overlay live in memory (memfd, /dev/shm), left nowhere."""
    lab = lab_factory(controllers=1, spares=1, profile="juju-2.9")
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(tmp_path / "rsa")],
                   check=True)
    copies = tmp_path / "copies"
    backup_id = ok(jb(lab, "-H", "ctl0", "create")).stdout.strip().splitlines()[-1]
    written = ok(jb(lab, "-H", "ctl0", "download", backup_id, "--dir", str(copies),
                    "--encrypt-to", (tmp_path / "rsa.pub").read_text().strip()))
    age_file = copies / f"{backup_id}.tar.gz.age"
    assert written.stdout.strip() == str(age_file) and sorted(p.name for p in copies.iterdir()) == [
        f"{backup_id}.json", age_file.name]
    assert copies.stat().st_mode & 0o777 == 0o700 and age_file.stat().st_mode & 0o777 == 0o600
    shm_before = set(Path("/dev/shm").glob("jujubackup-*"))  # other processes use /dev/shm too
    drilled = ok(jb(lab, "--format", "json", "drill", "--archive", str(age_file), "--identity",
                    str(tmp_path / "rsa"), "--target", "spare0"))
    report = json.loads(drilled.stdout)
    assert report["backup"] == backup_id and report["result"] == "passed", report
    conf = tmp_path / "stores.yaml"
    conf.write_text(f"stores:\n  here: {{kind: local, path: {copies}}}\n")
    again = ok(jb(lab, "--format", "json", "drill", "--archive", backup_id, "--store", "here",
                  "--store-config", str(conf), "--identity", str(tmp_path / "rsa"), "--target", "spare0",
                  "--force"))
    assert json.loads(again.stdout)["result"] == "passed"
    assert set(Path("/dev/shm").glob("jujubackup-*")) == shm_before
