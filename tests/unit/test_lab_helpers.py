"""Pure helpers of the lab: mirror from apt's own config, sizes, names that fit the kernel's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab import net, rootfs
from tests.lab.lab import parse_size


def _apt(tmp_path: Path, sources: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_mirror_comes_from_deb822_sources_skipping_security_and_disabled(tmp_path: Path) -> None:
    etc = _apt(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.invalid/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n")})
    assert rootfs.apt_mirror(etc) == "http://mirror.invalid/debian"


def test_mirror_falls_back_to_one_line_sources_list(tmp_path: Path) -> None:
    line = "deb [arch=amd64] http://old.invalid/debian bookworm main"
    etc = _apt(tmp_path, {"sources.list": f"# comment\n{line}\n"})
    assert rootfs.apt_mirror(etc) == "http://old.invalid/debian"


def test_no_mirror_configured_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no Debian mirror"):
        rootfs.apt_mirror(_apt(tmp_path, {}))


def test_recipe_hash_names_the_cache_files() -> None:
    assert rootfs.tarball_path().name == f"rootfs-{rootfs.recipe_hash()}.tar.zst"
    assert rootfs.rootfs_dir().parent == rootfs.CACHE_DIR
    assert "python3-bson" in rootfs.PACKAGES and "openssh-server" in rootfs.PACKAGES


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("4096", 4096), ("1GiB", 1 << 30), ("512M", 512 << 20), ("1.5KiB", 1536), (7, 7)])
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_size("lots")


def test_names_fit_kernel_limits_and_macs_are_fixed_per_ip() -> None:
    assert len(net.veth_name("abcdef", "10.201.0.250")) <= 15
    assert net.VETH_RE.match(net.veth_name("abcdef", "10.201.0.250"))
    assert net.NETNS_RE.match(net.netns_name("abcdef", "spare12"))
    assert net.mac_for("10.201.0.250") == "02:00:0a:c9:00:fa"
