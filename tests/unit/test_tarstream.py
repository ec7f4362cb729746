"""tarstream: the fast forward-only .tar.gz reader verify and restore stream archives through."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zlib

import pytest

from jujubackup import tarstream
from jujubackup.tarstream import ForwardStream, GzipReader, iter_tar


def _tar(members: dict[str, bytes], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "x" * 150
        tar.addfile(link)
    return out.getvalue()


def _read_all(stream: GzipReader, n: int = 7777) -> bytes:
    parts = []
    while piece := stream.read(n):
        parts.append(piece)
    return b"".join(parts)


def _members(raw: bytes) -> list[tuple[str, str, bytes | None]]:
    """Name, link target and data of every member, reading data in odd-sized pieces."""
    found = []
    for member, reader in iter_tar(io.BytesIO(raw)):
        data = None
        if reader is not None:
            parts = []
            while piece := reader.read(3001):
                parts.append(piece)
            data = b"".join(parts)
        found.append((member.name, member.linkname, data))
    return found


def test_gzip_reader_inflates_concatenated_members_and_zero_padding(inflater: str) -> None:
    one, two = os.urandom(3 << 20), b"hello" * 100000
    raw = gzip.compress(one) + b"\x00" * 1024 + gzip.compress(two) + b"\x00" * 10
    assert _read_all(GzipReader(io.BytesIO(raw), chunk=65536)) == one + two


@pytest.fixture(params=["zlib-ng", "zlib"])
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with zlib-ng's inflater (the installed one) and with the zlib fallback."""
    if request.param == "zlib":
        monkeypatch.setattr(tarstream, "INFLATE", zlib)
        monkeypatch.setattr(tarstream, "INFLATE_ERROR", zlib.error)
    else:
        assert tarstream.INFLATE.__name__ == "zlib_ng.zlib_ng", "zlib-ng is a dependency"
    return str(request.param)


def test_gzip_reader_refuses_truncation_corruption_and_non_gzip(inflater: str) -> None:
    raw = gzip.compress(os.urandom(1 << 20))
    with pytest.raises(EOFError):
        _read_all(GzipReader(io.BytesIO(raw[:-100])))
    flipped = bytearray(raw)
    flipped[-6] ^= 0xFF  # the stored CRC-32
    with pytest.raises(tarstream.INFLATE_ERROR, match="incorrect data check"):
        _read_all(GzipReader(io.BytesIO(bytes(flipped))))
    with pytest.raises(OSError, match="Not a gzipped file"):
        _read_all(GzipReader(io.BytesIO(b"PK\x03\x04 not gzip at all")))
    with pytest.raises(OSError):
        _read_all(GzipReader(io.BytesIO(b"")))


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_iter_tar_yields_long_names_links_and_data(fmt: int) -> None:
    long_name = "d/" + "n" * 200 + "/f\u00e9"
    members = {"a": os.urandom(5000), long_name: b"x" * 1_500_000, "empty": b""}
    found = _members(_tar(members, fmt))
    assert [(n, d) for n, _l, d in found if d is not None] == list(members.items())
    assert ("link", "x" * 150, None) in found


def test_iter_tar_skips_data_the_consumer_does_not_read() -> None:
    raw = _tar({"big": os.urandom(2 << 20), "small": b"tail"})
    names = [m.name for m, _r in iter_tar(io.BytesIO(raw))]
    assert names == ["big", "small", "link"]


def test_iter_tar_refuses_a_truncated_member_and_data_after_the_end() -> None:
    raw = _tar({"big": os.urandom(100000)})
    with pytest.raises(tarfile.ReadError):
        _members(raw[:50000])
    damaged = bytearray(raw)
    # a second header made invalid: tarfile would end there quietly, iter_tar must not
    second = 512 + 100000 + (-100000 % 512)
    damaged[second : second + 512] = b"\x01" * 512
    with pytest.raises(tarfile.ReadError):
        _members(bytes(damaged))


def test_forward_stream_reads_exactly_and_never_seeks_back() -> None:
    stream = ForwardStream(io.BytesIO(bytes(range(256)) * 10), chunk=100)
    assert stream.read(3) == bytes([0, 1, 2])
    assert stream.read(300) == (bytes(range(256)) * 2)[3:303]
    stream.seek(1000)
    assert stream.tell() == 1000 and stream.read(2) == bytes([1000 % 256, 1001 % 256])
    with pytest.raises(OSError):
        stream.seek(10)
    assert len(stream.read()) == 2560 - 1002
