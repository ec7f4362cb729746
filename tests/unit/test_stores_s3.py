"""The S3 store against a standalone moto_server process on loopback (tests/lab/s3server.py):
multipart puts published only when verified, resumed without sending held parts again, listed and
removed; an encrypted put never resumes; wrong credentials and a missing bucket are typed errors."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup import crypt
from jujubackup.errors import EXIT_CONNECT, EXIT_NOT_FOUND, EXIT_VERIFY, JujuBackupError
from jujubackup.stores.config import parse_stores
from jujubackup.stores.factory import open_store
from jujubackup.stores.s3 import S3Store
from tests.lab.s3server import S3Server, s3_server

BID = "20261203-071500.ffffffff-0000-1111-2222-333333333333"
DATA = os.urandom(12 << 20)
SHA = hashlib.sha256(DATA).hexdigest()
RECORD = {"ID": BID, "sha256": SHA, "size": len(DATA)}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


def store(s3: S3Server, prefix: str, **extra: object) -> S3Store:
    config = {"kind": "s3", "bucket": s3.bucket, "prefix": prefix, "endpoint-url": s3.endpoint,
              "credentials-file": str(s3.credentials_file), "part-size-mib": 5, **extra}
    made = open_store("offsite", parse_stores({"offsite": config})["offsite"])
    assert isinstance(made, S3Store)
    return made


def write(session: object, data: bytes) -> None:
    for i in range(0, len(data), 1 << 20):
        session.write(data[i:i + (1 << 20)])  # type: ignore[attr-defined]


def test_an_interrupted_put_resumes_without_sending_held_parts(s3: S3Server) -> None:
    st = store(s3, "resume/")
    first = st.begin_put(BID, encrypted=False, size=len(DATA), plain_sha256=SHA)
    write(first, DATA[: 7 << 20])  # one 5 MiB part sent, 2 MiB buffered when it stops
    first.abort(keep=True)
    assert st.list_backups() == []  # nothing published
    again = st.begin_put(BID, encrypted=False, size=len(DATA), plain_sha256=SHA)
    write(again, DATA)
    stored = again.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    assert again.reused == 5 << 20
    assert stored.sha256 == SHA and stored.size == len(DATA) and stored.record is not None
    body = s3.client().get_object(Bucket=s3.bucket, Key=f"resume/{BID}.tar.gz")
    assert body["Body"].read() == DATA and body["Metadata"]["jujubackup-sha256"] == SHA
    with st.open(BID) as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == SHA
    assert s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix="resume/").get("Uploads", []) == []
    st.remove(BID)
    assert s3.client().list_objects_v2(Bucket=s3.bucket, Prefix="resume/")["KeyCount"] == 0


def test_a_mismatching_stream_publishes_nothing(s3: S3Server) -> None:
    st = store(s3, "bad/")
    session = st.begin_put(BID, encrypted=False, size=len(DATA), plain_sha256=SHA)
    write(session, DATA[:-1] + bytes([DATA[-1] ^ 1]))  # changed whatever the random last byte was
    with pytest.raises(JujuBackupError) as err:
        session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    assert err.value.exit_code == EXIT_VERIFY
    client = s3.client()
    assert client.list_objects_v2(Bucket=s3.bucket, Prefix="bad/")["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=s3.bucket, Prefix="bad/").get("Uploads", []) == []


def encrypt_into(session: object, data: bytes, upto: int, recipient: str) -> crypt.EncryptingWriter:
    writer = crypt.EncryptingWriter(session, [crypt.parse_recipient(recipient)],  # type: ignore[arg-type]
                                    material=session.material)  # type: ignore[attr-defined]
    write(writer, data[:upto])
    return writer


def test_an_encrypted_put_resumes_with_the_key_material_it_kept(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    subprocess.run(["age-keygen", "-o", str(tmp_path / "key")], check=True, capture_output=True)
    pub = subprocess.run(["age-keygen", "-y", str(tmp_path / "key")], check=True, capture_output=True,
                         text=True).stdout.strip()
    st = store(s3, "enc/", **{"encrypt-to": [pub]})
    first = st.begin_put(BID, encrypted=True, plain_sha256=SHA)
    encrypt_into(first, DATA, 8 << 20, pub)  # one 5 MiB part of ciphertext sent
    first.abort(keep=True)
    [state] = (tmp_path / "state" / "jujubackup" / "s3-puts").iterdir()
    assert state.stat().st_mode & 0o777 == 0o600 and state.parent.stat().st_mode & 0o777 == 0o700
    again = st.begin_put(BID, encrypted=True, plain_sha256=SHA)
    assert set(again.existing) == {1}
    writer = encrypt_into(again, DATA, len(DATA), pub)
    writer.close()
    stored = again.commit(RECORD, plain_sha256=writer.plain_sha256, plain_size=writer.plain_size,
                          recipients=(pub,))
    assert again.reused == 5 << 20 and stored.encrypted and stored.sha256 == SHA
    assert not state.exists()  # the file key is gone once the put completed
    blob = s3.client().get_object(Bucket=s3.bucket, Key=f"enc/{BID}.tar.gz.age")["Body"].read()
    (tmp_path / "c.age").write_bytes(blob)
    plain = subprocess.run(["age", "-d", "-i", str(tmp_path / "key"), str(tmp_path / "c.age")],
                           capture_output=True, check=True).stdout
    assert plain == DATA


def test_an_encrypted_put_without_its_key_material_starts_again(
        s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    pub = crypt.bech32_encode("age", bytes(range(1, 33)))
    st = store(s3, "enc2/", **{"encrypt-to": [pub]})
    first = st.begin_put(BID, encrypted=True, plain_sha256=SHA)
    encrypt_into(first, DATA, 6 << 20, pub)
    first.abort(keep=True)
    for state in (tmp_path / "state" / "jujubackup" / "s3-puts").iterdir():
        state.unlink()
    again = st.begin_put(BID, encrypted=True, plain_sha256=SHA)
    assert again.existing == {}  # a new upload: the old one aborted
    uploads = s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix="enc2/").get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [again.upload_id]
    again.abort(keep=False)
    assert s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix="enc2/").get("Uploads", []) == []


def test_wrong_credentials_and_a_missing_bucket(s3: S3Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("[default]\naws_access_key_id = AKIANOSUCHKEY\naws_secret_access_key = x\n")
    bad.chmod(0o600)
    with pytest.raises(JujuBackupError) as err:
        store(s3, "x/", **{"credentials-file": str(bad)}).list_backups()
    assert err.value.exit_code == EXIT_CONNECT and "InvalidAccessKeyId" in err.value.message
    with pytest.raises(JujuBackupError) as err:
        store(s3, "x/", bucket="no-such-bucket").list_backups()
    assert err.value.exit_code == EXIT_NOT_FOUND and "does not exist" in err.value.message
