"""The local directory store (issue 17): atomic, verified, resumable puts; 0600 files in a 0700 dir;
names from the validated ID only; the sidecar keeps the plaintext SHA-256 of an encrypted copy."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from jujubackup.errors import EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_USAGE, EXIT_VERIFY, JujuBackupError
from jujubackup.stores import object_name
from jujubackup.stores.config import LocalStoreConfig, load_stores, parse_stores
from jujubackup.stores.factory import open_store

BID = "20261203-071500.ffffffff-0000-1111-2222-333333333333"
DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
RECORD = {"ID": BID, "sha256": SHA, "size": len(DATA), "Notes": "n"}


def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_store("here", LocalStoreConfig(kind="local", path=tmp_path / "copies"))


def test_a_put_is_placed_only_after_it_verified(tmp_path: Path) -> None:
    st = store(tmp_path)
    session = st.begin_put(BID, encrypted=False, size=len(DATA))
    assert session.offset == 0
    session.write(DATA[:1000])
    assert not (tmp_path / "copies" / f"{BID}.tar.gz").exists()
    session.write(DATA[1000:])
    stored = session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    path = tmp_path / "copies" / f"{BID}.tar.gz"
    assert path.read_bytes() == DATA and path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "copies").stat().st_mode & 0o777 == 0o700
    assert stored.sha256 == SHA and stored.stored_sha256 == SHA and not stored.encrypted
    side = json.loads((tmp_path / "copies" / f"{BID}.json").read_text())
    assert side["stored"]["file"] == path.name and side["sha256"] == SHA
    assert [b.id for b in st.list_backups()] == [BID] and st.list_backups()[0].record is not None
    with st.open(BID) as fh:
        assert fh.read() == DATA


def test_a_bad_copy_is_removed_and_nothing_placed(tmp_path: Path) -> None:
    st = store(tmp_path)
    session = st.begin_put(BID, encrypted=False)
    session.write(DATA[:-1] + bytes([DATA[-1] ^ 1]))  # changed whatever the random last byte was
    with pytest.raises(JujuBackupError) as err:
        session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    assert err.value.exit_code == EXIT_VERIFY
    assert list((tmp_path / "copies").iterdir()) == []


def test_an_interrupted_plain_put_resumes_where_it_stopped(tmp_path: Path) -> None:
    st = store(tmp_path)
    first = st.begin_put(BID, encrypted=False)
    first.write(DATA[:123_456])
    first.abort(keep=True)
    again = st.begin_put(BID, encrypted=False)
    assert again.offset == 123_456
    assert again.prefix_sha256 == hashlib.sha256(DATA[:123_456]).hexdigest()
    again.write(DATA[123_456:])
    assert again.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA)).size == len(DATA)


def test_an_encrypted_put_keeps_the_plaintext_digest_in_the_sidecar(tmp_path: Path) -> None:
    st = store(tmp_path)
    session = st.begin_put(BID, encrypted=True)
    assert session.offset == 0
    session.write(b"ciphertext")
    stored = session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA), recipients=("age1x",))
    assert stored.encrypted and stored.name == f"{BID}.tar.gz.age" and stored.sha256 == SHA
    assert stored.stored_sha256 == hashlib.sha256(b"ciphertext").hexdigest()
    side = json.loads((tmp_path / "copies" / f"{BID}.json").read_text())
    assert side["stored"]["plain_sha256"] == SHA and side["stored"]["format"] == "age-v1"


def test_a_link_planted_at_the_partial_is_refused(tmp_path: Path) -> None:
    (tmp_path / "copies").mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / "copies" / f"{BID}.tar.gz.part").symlink_to(victim)
    with pytest.raises(JujuBackupError) as err:
        store(tmp_path).begin_put(BID, encrypted=False)
    assert err.value.exit_code == EXIT_REFUSED and victim.read_text() == "keep"


def test_names_come_from_a_valid_id_only(tmp_path: Path) -> None:
    with pytest.raises(JujuBackupError) as err:
        store(tmp_path).begin_put("../../etc/passwd", encrypted=False)
    assert err.value.exit_code == EXIT_VERIFY
    with pytest.raises(JujuBackupError):
        object_name("20261203-071500.x/..", encrypted=True)


def test_a_sidecar_of_another_backup_makes_the_copy_incomplete(tmp_path: Path) -> None:
    st = store(tmp_path)
    session = st.begin_put(BID, encrypted=False)
    session.write(DATA)
    session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    side = tmp_path / "copies" / f"{BID}.json"
    doc = json.loads(side.read_text())
    doc["ID"] = "20261203-071501.ffffffff-0000-1111-2222-333333333333"
    side.write_text(json.dumps(doc))
    got = st.get(BID)
    assert got.record is None and got.problems and got.row()["complete"].startswith("no")


def test_remove_deletes_sidecar_and_archive(tmp_path: Path) -> None:
    st = store(tmp_path)
    session = st.begin_put(BID, encrypted=False)
    session.write(DATA)
    session.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA))
    st.remove(BID)
    assert list((tmp_path / "copies").iterdir()) == []
    with pytest.raises(JujuBackupError) as err:
        st.remove(BID)
    assert err.value.exit_code == EXIT_NOT_FOUND


def test_store_config_rejects_unknown_keys_with_their_line(tmp_path: Path) -> None:
    conf = tmp_path / "stores.yaml"
    conf.write_text("stores:\n  here:\n    kind: local\n    path: /srv/x\n    pathh: /srv/y\n")
    with pytest.raises(JujuBackupError) as err:
        load_stores(conf)
    assert err.value.exit_code == EXIT_USAGE
    assert f"{conf}:5: stores.here.pathh" in err.value.message


def test_store_config_parses_both_kinds() -> None:
    stores = parse_stores({
        "a": {"kind": "local", "path": "~/x"},
        "b": {"kind": "s3", "bucket": "juju-backups", "prefix": "prod", "endpoint-url": "http://127.0.0.1:9000"},
    })
    assert stores["a"].kind == "local" and not str(stores["a"].path).startswith("~")
    assert stores["b"].kind == "s3" and stores["b"].prefix == "prod/"


def test_a_second_put_of_the_same_copy_is_locked_out(tmp_path: Path) -> None:
    st = store(tmp_path)
    first = st.begin_put(BID, encrypted=False)
    first.write(DATA[:100_000])
    with pytest.raises(JujuBackupError) as err:
        st.begin_put(BID, encrypted=False)  # would have appended to or restarted the first's partial
    assert err.value.exit_code == 7 and "under way" in err.value.message
    first.write(DATA[100_000:])
    assert first.commit(RECORD, plain_sha256=SHA, plain_size=len(DATA)).sha256 == SHA
    assert (tmp_path / "copies" / f"{BID}.tar.gz").read_bytes() == DATA


def test_a_recipient_with_a_bad_checksum_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    conf = tmp_path / "stores.yaml"
    bad = "age1" + "q" * 58  # the right form, a wrong Bech32 checksum
    conf.write_text(f"stores:\n  here:\n    kind: local\n    path: /srv/x\n    encrypt-to:\n      - {bad}\n")
    with pytest.raises(JujuBackupError) as err:
        load_stores(conf)
    assert err.value.exit_code == EXIT_USAGE
    assert err.value.message.startswith(f"{conf}:5: stores.here.encrypt-to: ")
    assert "bad checksum" in err.value.message
