"""restore's early push hashes what it sends (transfer.HashingSource): chunk by chunk when the bytes
go through this process, and behind `ssh` from the page cache when `ssh` reads the file itself
(host.base.DirectFile), up to the shared offset `ssh` has reached: the same digest either way."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from jujubackup.restore import execute
from jujubackup.transfer import HashingSource
from tests.fakehost import FakeHost, Reply


def archive(tmp_path: Path, size: int = 3 * (1 << 20) + 11) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "a.tar.gz"
    path.write_bytes(data)
    return path, data


def test_direct_file_hashes_only_what_the_other_reader_took(tmp_path: Path) -> None:
    path, data = archive(tmp_path)
    digest = hashlib.sha256()
    with path.open("rb", buffering=0) as fh:
        fh.seek(5)
        direct = HashingSource(fh, digest).direct_file()
        assert direct is not None
        fd, catch_up = direct
        os.read(fd, 1_500_000)  # as `ssh` reading its stdin moves the shared offset
        catch_up()
        partial = digest.copy().hexdigest()
        while os.read(fd, 1 << 20):
            catch_up()
        catch_up()
    assert partial == hashlib.sha256(data[5:1_500_005]).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(data[5:]).hexdigest()


def test_no_direct_file_without_a_regular_file() -> None:
    assert HashingSource(io.BytesIO(b"abc"), hashlib.sha256()).direct_file() is None


def test_push_early_returns_the_sha256_of_the_bytes_the_host_received(tmp_path: Path) -> None:
    path, data = archive(tmp_path)
    received: list[bytes] = []

    def receive(text: str, stdin: bytes) -> Reply:
        received.append(stdin)
        return Reply('{"received":true}\n')

    host = FakeHost("spare0", tmp_path / "host").expect("restore-receive", receive)
    assert execute.push_early(host, path) == hashlib.sha256(data).hexdigest()
    assert received == [data]
    assert host.direct_streams == 1
