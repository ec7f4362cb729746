"""download's direct path (issue 18): when the host can write the stream into the `.part` file itself
(SSHHost over OpenSSH; FakeHost imitates it through host.base.DirectSink), the SHA-256 is computed by
reading the file back behind the writer, with the same outcome as the Python write path: a match is
renamed into place 0600, a mismatch removes the partial and exits 8, a kept partial resumes, and
--bwlimit keeps the chunk-by-chunk path."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from jujubackup import transfer
from jujubackup.errors import EXIT_VERIFY
from tests.fakehost import LOCAL, FakeConnector, FakeHost
from tests.paths import VALID_28
from tests.unit.test_verbs_on_fake import VALID_ID, controller, run


def uploaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[FakeHost, FakeConnector, str]:
    host = controller("ctl0", tmp_path / "host").expect("transfer-stat", LOCAL)
    fake = FakeConnector({"ctl0": host})
    backups = str(tmp_path / "host" / "backups")
    assert run(fake, capsys, "upload", str(VALID_28), "--backup-dir", backups)[0] == 0
    return host, fake, backups


def test_download_is_written_by_the_host_into_the_part_and_hashed_behind_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, fake, backups = uploaded(tmp_path, capsys)
    dest = tmp_path / "copy.tar.gz"
    code, _, err = run(fake, capsys, "download", "latest", str(dest), "--backup-dir", backups)
    assert code == 0, err
    assert host.direct_gets == 1
    assert dest.read_bytes() == VALID_28.read_bytes()
    assert dest.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "copy.tar.gz.part").exists()


def test_a_bandwidth_limit_keeps_the_chunk_by_chunk_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, fake, backups = uploaded(tmp_path, capsys)
    dest = tmp_path / "copy.tar.gz"
    code, _, err = run(fake, capsys, "download", "latest", str(dest), "--bwlimit", "10M",
                       "--backup-dir", backups)
    assert code == 0, err
    assert host.direct_gets == 0
    assert dest.read_bytes() == VALID_28.read_bytes()


def test_a_damaged_stored_copy_written_directly_is_removed_and_exits_8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, fake, backups = uploaded(tmp_path, capsys)
    stored = Path(backups) / f"{VALID_ID}.tar.gz"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    dest = tmp_path / "copy.tar.gz"
    code, _, err = run(fake, capsys, "download", "latest", str(dest), "--backup-dir", backups)
    assert code == EXIT_VERIFY, err
    assert host.direct_gets == 1
    assert "does not match the catalog" in err
    assert not dest.exists() and not (tmp_path / "copy.tar.gz.part").exists()


def test_a_matching_partial_is_resumed_and_hashed_from_its_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, fake, backups = uploaded(tmp_path, capsys)
    dest = tmp_path / "copy.tar.gz"
    part = tmp_path / "copy.tar.gz.part"
    whole = VALID_28.read_bytes()
    part.write_bytes(whole[:5000])
    code, _, err = run(fake, capsys, "download", "latest", str(dest), "--backup-dir", backups)
    assert code == 0, err
    assert host.direct_gets == 1 and "resuming download" in err and "at byte 5000" in err
    assert dest.read_bytes() == whole


def test_direct_file_is_offered_only_for_an_unthrottled_readable_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "part"
    with transfer.open_private(path, append=True) as write_only:
        sink = transfer.HashingSink(write_only, hashlib.sha256(), transfer.Throttle(None))
        assert sink.direct_file() is None
    with transfer.open_private(path, append=True, readable=True) as both:
        assert transfer.HashingSink(both, hashlib.sha256(), transfer.Throttle(1000)).direct_file() is None
        assert transfer.HashingSink(both, hashlib.sha256(), transfer.Throttle(None)).direct_file() is not None
    memory = transfer.HashingSink(io.BytesIO(), hashlib.sha256(), transfer.Throttle(None))
    assert memory.direct_file() is None


def test_catch_up_hashes_what_another_writer_appended_after_the_kept_prefix(tmp_path: Path) -> None:
    path = tmp_path / "part"
    path.write_bytes(b"kept prefix")
    hasher = hashlib.sha256(b"kept prefix")
    data = os.urandom(transfer.CHUNK * 2 + 123)
    with transfer.open_private(path, append=True, readable=True) as fh:
        direct = transfer.HashingSink(fh, hasher, transfer.Throttle(None)).direct_file()
        assert direct is not None
        fd, catch_up = direct
        catch_up()  # nothing new yet
        os.write(fd, data[:1000])
        catch_up()
        os.write(fd, data[1000:])
        catch_up()
        catch_up()  # nothing new: hashed once only
    assert path.stat().st_mode & 0o777 == 0o600
    assert hasher.hexdigest() == hashlib.sha256(b"kept prefix" + data).hexdigest()
