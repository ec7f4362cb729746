"""The S3 store against a standalone moto_server process on loopback (tests/lab/s3server.py):
multipart puts published only when verified, resumed without sending held parts again, listed and
removed; an encrypted put never resumes; wrong credentials and a missing bucket are typed errors."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from jujubackup.errors import EXIT_CONNECT, EXIT_NOT_FOUND, EXIT_VERIFY, JujuBackupError
from jujubackup.stores import open_store
from jujubackup.stores.config import parse_stores
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
    write(session, DATA[:-1] + b"x")
    with pytest.raises(JujuBackupError) as err:
        session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    assert err.value.exit_code == EXIT_VERIFY
    client = s3.client()
    assert client.list_objects_v2(Bucket=s3.bucket, Prefix="bad/")["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=s3.bucket, Prefix="bad/").get("Uploads", []) == []


def test_an_encrypted_put_starts_again(s3: S3Server) -> None:
    st = store(s3, "enc/")
    first = st.begin_put(BID, encrypted=True)
    write(first, os.urandom(6 << 20))
    first.abort(keep=True)  # an encrypted partial is never kept
    assert s3.client().list_multipart_uploads(Bucket=s3.bucket, Prefix="enc/").get("Uploads", []) == []
    again = st.begin_put(BID, encrypted=True)
    assert again.offset == 0 and again.existing == {}
    again.abort(keep=False)


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
