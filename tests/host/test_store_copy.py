"""Copying a backup from a controller into stores (issue 17): over a real SSHHost (throwaway sshd on
127.0.0.1) into a local directory store and an S3 store served by a separate moto_server process on
loopback. The age-encrypted copy opens with the `age` CLI to the byte-identical archive whose SHA-256
the sidecar records; wrong S3 credentials exit 3 and store nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup import crypt
from jujubackup.catalog import Catalog
from jujubackup.errors import EXIT_CONNECT, JujuBackupError
from jujubackup.host.ssh import SSHHost
from jujubackup.operations.copy import copy_to_stores
from jujubackup.operations.upload import upload
from jujubackup.stores.config import load_stores
from jujubackup.stores.factory import open_store
from jujubackup.ui import UI
from tests.host.test_host_transfer import ID, archive, host, juju_machine, sshd, ui  # noqa: F401
from tests.lab.s3server import S3Server, s3_server

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def age_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    key = tmp_path_factory.mktemp("age") / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    return subprocess.run(["age-keygen", "-y", str(key)], check=True, capture_output=True,
                          text=True).stdout.strip(), key


def stored_on_controller(host: SSHHost, ui: UI, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    source = archive(tmp_path)
    backups = str(tmp_path / "backups")
    upload(host, juju_machine(source, backup_dir=backups), ui)
    return source, Catalog(host, backups).get(ID)


def stores_file(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "stores.yaml"
    conf.write_text("stores:\n" + text)
    return conf


def test_one_read_fills_a_local_encrypted_and_an_s3_plain_store(
    host: SSHHost, ui: UI, tmp_path: Path, s3: S3Server, age_key: tuple[str, Path]  # noqa: F811
) -> None:
    source, record = stored_on_controller(host, ui, tmp_path)
    conf = stores_file(tmp_path, f"  here:\n    kind: local\n    path: {tmp_path / 'copies'}\n"
                                 f"    encrypt-to: [{age_key[0]}]\n" + s3.store_yaml(prefix="t1/"))
    stores = [open_store(name, cfg) for name, cfg in load_stores(conf).items()]
    outcomes = copy_to_stores(host, record, stores, ui)
    assert [o.error for o in outcomes] == [None, None]
    age_file = tmp_path / "copies" / f"{ID}.tar.gz.age"
    assert age_file.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "copies" / f"{ID}.tar.gz").exists()
    plain = subprocess.run(["age", "-d", "-i", str(age_key[1]), str(age_file)], capture_output=True,
                           check=True)
    assert plain.stdout == source.read_bytes()
    side = json.loads((tmp_path / "copies" / f"{ID}.json").read_text())
    assert side["sha256"] == hashlib.sha256(plain.stdout).hexdigest() == record.sha256
    assert side["stored"]["plain_sha256"] == record.sha256
    obj = s3.client().get_object(Bucket=s3.bucket, Key=f"t1/{ID}.tar.gz")
    assert obj["Body"].read() == source.read_bytes()
    assert obj["Metadata"]["jujubackup-sha256"] == record.sha256
    assert [b.id for b in stores[1].list_backups()] == [ID]
    again = copy_to_stores(host, record, stores, ui)  # a second run leaves complete copies alone
    assert all(o.already_present for o in again)


def test_an_encrypted_s3_copy_decrypts_by_streaming(
    host: SSHHost, ui: UI, tmp_path: Path, s3: S3Server, age_key: tuple[str, Path]  # noqa: F811
) -> None:
    source, record = stored_on_controller(host, ui, tmp_path)
    conf = stores_file(tmp_path, s3.store_yaml(prefix="t2/", encrypt_to=[age_key[0]]))
    store = open_store("offsite", load_stores(conf)["offsite"])
    [outcome] = copy_to_stores(host, record, [store], ui)
    assert outcome.error is None and outcome.stored is not None and outcome.stored.encrypted
    with store.open(ID) as raw:
        reader = crypt.DecryptingReader(raw, crypt.load_identities(age_key[1]))
        assert reader.read() == source.read_bytes()
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="t2/")["Contents"]]
    assert sorted(keys) == [f"t2/{ID}.json", f"t2/{ID}.tar.gz.age"]


def test_wrong_s3_credentials_exit_3_and_store_nothing(
    host: SSHHost, ui: UI, tmp_path: Path, s3: S3Server  # noqa: F811
) -> None:
    _, record = stored_on_controller(host, ui, tmp_path)
    bad = tmp_path / "bad.credentials"
    bad.write_text(f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = wrong\n")
    bad.chmod(0o600)
    conf = stores_file(tmp_path, s3.store_yaml(prefix="t3/", credentials_file=bad))
    store = open_store("offsite", load_stores(conf)["offsite"])
    [outcome] = copy_to_stores(host, record, [store], ui)
    assert outcome.error is not None and outcome.error.exit_code == EXIT_CONNECT
    assert "refused the credentials" in outcome.error.message
    assert s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="t3/").get("KeyCount") == 0
    with pytest.raises(JujuBackupError) as err:
        store.list_backups()
    assert err.value.exit_code == EXIT_CONNECT


def test_a_credentials_file_readable_by_others_is_refused(tmp_path: Path, s3: S3Server) -> None:
    loose = tmp_path / "loose.credentials"
    loose.write_text(s3.credentials_file.read_text())
    loose.chmod(0o644)
    conf = stores_file(tmp_path, s3.store_yaml(prefix="t4/", credentials_file=loose))
    with pytest.raises(JujuBackupError, match="mode 0600"):
        open_store("offsite", load_stores(conf)["offsite"]).list_backups()
