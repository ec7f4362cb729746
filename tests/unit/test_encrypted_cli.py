"""The CLI with age-encrypted copies (issue 17): verify and info decrypt as they read with
--identity FILE; a wrong identity, a truncated copy or a missing --identity each give one clear
line and their exit code, and change nothing; list/verify --store read a store's copies."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from jujubackup import cli
from jujubackup.errors import EXIT_USAGE, EXIT_VERIFY
from jujubackup.sources import Source, materialized
from tests.unit.archive_builders import VALID

BID = "20200225-041241.ffffffff-0000-1111-2222-333333333333"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path, Path]:
    """(recipient, its identity file, another identity file)."""
    subprocess.run(["age-keygen", "-o", str(tmp_path / "key.txt")], check=True, capture_output=True)
    subprocess.run(["age-keygen", "-o", str(tmp_path / "other.txt")], check=True, capture_output=True)
    pub = subprocess.run(["age-keygen", "-y", str(tmp_path / "key.txt")], check=True, capture_output=True,
                         text=True).stdout.strip()
    return pub, tmp_path / "key.txt", tmp_path / "other.txt"


def encrypted(tmp_path: Path, recipient: str) -> Path:
    out = tmp_path / f"{BID}.tar.gz.age"
    subprocess.run(["age", "-e", "-r", recipient, "-o", str(out), str(VALID)], check=True)
    return out


def test_verify_decrypts_with_the_identity(keys: tuple[str, Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = encrypted(tmp_path, keys[0])
    code, out, err = run(["verify", str(path), "--identity", str(keys[1])], capsys)
    assert code == 0, err
    assert hashlib.sha256(VALID.read_bytes()).hexdigest() in out and "ok   decrypt" in out


def test_verify_without_or_with_a_wrong_identity(keys: tuple[str, Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = encrypted(tmp_path, keys[0])
    before = path.read_bytes()
    code, _, err = run(["verify", str(path)], capsys)
    assert code == EXIT_USAGE and "give --identity FILE" in err.splitlines()[-1]
    code, out, err = run(["verify", str(path), "--identity", str(keys[2])], capsys)
    assert code == EXIT_VERIFY and out == ""
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: no identity given opens {path} (encrypted to: X25519)"]
    assert path.read_bytes() == before


def test_a_truncated_encrypted_copy_is_exit_8(keys: tuple[str, Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = encrypted(tmp_path, keys[0])
    path.write_bytes(path.read_bytes()[:-100])
    code, _, err = run(["verify", str(path), "--identity", str(keys[1])], capsys)
    assert code == EXIT_VERIFY
    assert "truncated or corrupt" in err and path.exists()


def test_materialized_plaintext_lives_in_memory_only(keys: tuple[str, Path, Path], tmp_path: Path) -> None:
    path = encrypted(tmp_path, keys[0])
    work = tmp_path / "work"
    work.mkdir()
    with materialized(Source(path=path, identity=keys[1]), work) as plain:
        assert plain.name == f"{BID}.tar.gz" and plain.read_bytes() == VALID.read_bytes()
        assert plain.is_symlink() and "/proc/" in str(plain.readlink())
        on_disk = [p for p in work.rglob("*") if p.is_file() and not p.is_symlink()]
        assert on_disk == []
    assert list(work.iterdir()) == []


def test_list_and_verify_a_local_store(keys: tuple[str, Path, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from jujubackup.stores.config import LocalStoreConfig
    from jujubackup.stores.factory import open_store

    store = open_store("here", LocalStoreConfig(kind="local", path=tmp_path / "copies", encrypt_to=[keys[0]]))
    data = VALID.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    from jujubackup import crypt

    session = store.begin_put(BID, encrypted=True)
    writer = crypt.EncryptingWriter(session, [crypt.parse_recipient(keys[0])])
    writer.write(data)
    writer.close()
    session.commit({"ID": BID, "sha256": sha, "size": len(data)}, plain_sha256=sha, plain_size=len(data))
    conf = tmp_path / "stores.yaml"
    conf.write_text(f"stores:\n  here: {{kind: local, path: {tmp_path / 'copies'}}}\n")
    code, out, err = run(["list", "--store", "here", "--store-config", str(conf), "--format", "json"], capsys)
    assert code == 0, err
    assert f'"id": "{BID}"' in out and '"encrypted": "age"' in out
    code, out, err = run(["verify", "latest", "--store", "here", "--store-config", str(conf),
                          "--identity", str(keys[1])], capsys)
    assert code == 0, err
    code, out, err = run(["verify", "latest", "--store", "here", "--store-config", str(conf),
                          "--identity", str(keys[2])], capsys)
    assert code == EXIT_VERIFY


def test_info_of_an_encrypted_file_reads_its_metadata(keys: tuple[str, Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = encrypted(tmp_path, keys[0])
    code, out, err = run(["info", str(path), "--identity", str(keys[1]), "--format", "json"], capsys)
    assert code == 0, err
    assert '"hostname": "juju-53ab97-0"' in out and '"encrypted": true' in out
    code, out, err = run(["info", str(path), "--identity", str(keys[2])], capsys)
    assert code == EXIT_VERIFY and out == "" and "no identity given opens" in err


def test_list_local_shows_encrypted_downloads(keys: tuple[str, Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from jujubackup import crypt
    from jujubackup.stores.config import LocalStoreConfig
    from jujubackup.stores.factory import open_store

    store = open_store("here", LocalStoreConfig(kind="local", path=tmp_path / "copies", encrypt_to=[keys[0]]))
    data = VALID.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    session = store.begin_put(BID, encrypted=True)
    writer = crypt.EncryptingWriter(session, [crypt.parse_recipient(keys[0])])
    writer.write(data)
    writer.close()
    session.commit({"ID": BID, "sha256": sha, "size": len(data)}, plain_sha256=sha, plain_size=len(data))
    code, out, err = run(["list", "--local", str(tmp_path / "copies"), "--format", "json"], capsys)
    assert code == 0, err
    assert f'"id": "{BID}"' in out and '"verified": "yes"' in out and ".tar.gz.age" in out
    code, out, err = run(["list", "--local", str(tmp_path / "copies"), "--check"], capsys)
    assert code == 0 and "encrypted: `verify FILE --identity KEY`" in out


def test_restore_from_a_truncated_store_copy_stops_before_connecting(
        keys: tuple[str, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from jujubackup import crypt
    from jujubackup.stores.config import LocalStoreConfig
    from jujubackup.stores.factory import open_store

    store = open_store("here", LocalStoreConfig(kind="local", path=tmp_path / "copies"))
    data = VALID.read_bytes() * 8  # several age chunks
    sha = hashlib.sha256(data).hexdigest()
    session = store.begin_put(BID, encrypted=True)
    writer = crypt.EncryptingWriter(session, [crypt.parse_recipient(keys[0])])
    writer.write(data)
    writer.close()
    session.commit({"ID": BID, "sha256": sha, "size": len(data)}, plain_sha256=sha, plain_size=len(data))
    age_file = tmp_path / "copies" / f"{BID}.tar.gz.age"
    age_file.write_bytes(age_file.read_bytes()[:-500])
    conf = tmp_path / "stores.yaml"
    conf.write_text(f"stores:\n  here: {{kind: local, path: {tmp_path / 'copies'}}}\n")
    work = tmp_path / "work"
    work.mkdir()
    code, _, err = run(["-H", "127.0.0.1:9", "restore", "--archive", BID, "--store", "here",
                        "--store-config", str(conf), "--identity", str(keys[1]), "--target", "127.0.0.1:9",
                        "--yes", "--work-dir", str(work)], capsys)
    assert code == EXIT_VERIFY, err
    assert "truncated or corrupt" in err and "connect" not in err
    assert age_file.exists() and list(work.iterdir()) == []


def test_with_an_identity_the_work_dir_is_in_memory(keys: tuple[str, Path, Path], tmp_path: Path) -> None:
    from jujubackup.cli.storeopts import archive_path

    path = encrypted(tmp_path, keys[0])
    with archive_path(path, None, None, keys[1], None) as (plain, work):
        assert plain is not None and plain.read_bytes() == VALID.read_bytes()
        assert work is not None and work.parent == Path("/dev/shm") and work.stat().st_mode & 0o777 == 0o700
        assert plain.parent.parent == work
    assert not work.exists()
    given = tmp_path / "mine"
    given.mkdir()
    with archive_path(path, None, None, keys[1], given) as (_, work):
        assert work == given  # the operator's --work-dir is used as given


@pytest.mark.parametrize("args, message", [
    (["--encrypt-to", "age1notakey"], "not an age recipient"),
    (["--encrypt-to", "ssh-dss AAAAB3NzaC1kc3MAAACBAP"], "not an age recipient"),
    (["--store", "offsite"], "--store offsite needs --store-config FILE"),
    (["--encrypt-to", "age1x", "out.tar.gz"], "give --dir DIR (or --store NAME), not FILE"),
])
def test_download_refuses_bad_encryption_or_store_flags_before_connecting(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUJUBACKUP_STORE_CONFIG", raising=False)
    positional = [a for a in args if a == "out.tar.gz"]
    flags = [a for a in args if a != "out.tar.gz"]
    code, out, err = run(["-H", "127.0.0.1:9", "download", BID, *positional, *flags], capsys)
    assert code == EXIT_USAGE, err
    assert message in err and out == "" and "connect" not in err
