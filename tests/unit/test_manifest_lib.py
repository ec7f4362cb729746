"""create's manifest member list (remote_scripts/lib/manifest.bash.j2), run by bash on a local directory:
member names with newlines, spaces, backslashes and quotes (collection names reach the dump's file names)
are listed once each, with their own size and SHA-256 (issue 11)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from jujubackup import scripts

NAMES = ["metadata.json", "root.tar", "dump/juju/machines.bson", "dump/juju/evil\nname.bson",
         "dump/juju/back\\slash.bson", "dump/juju/ lead and trail .bson", 'dump/juju/q"uote.bson']


def _run(tmp_path: Path, call: str) -> str:
    env = scripts.environment()
    text = "\n".join(["#!/bin/bash", "set -euo pipefail", "export LC_ALL=C",
                      env.from_string('{{ bash_lib("manifest") }}').render(), call])
    done = subprocess.run(["bash", "-c", text, "test", str(tmp_path / "juju-backup")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _tree(tmp_path: Path) -> dict[str, bytes]:
    files = {name: f"content of {name!r}".encode() * (i + 1) for i, name in enumerate(NAMES)}
    for name, data in files.items():
        path = tmp_path / "juju-backup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp_path / "juju-backup/manifest.json").write_text("{}")  # never listed
    return files


def test_every_member_is_listed_once_with_its_own_size_and_hash(tmp_path: Path) -> None:
    files = _tree(tmp_path)
    listed = json.loads(_run(tmp_path, 'manifest_files "$1"'))
    assert [e["path"] for e in listed] == sorted(NAMES, key=lambda n: n.encode())
    for entry in listed:
        data = files[entry["path"]]
        assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_member_count_counts_a_name_with_a_newline_once(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert _run(tmp_path, 'manifest_count "$1"').strip() == str(len(NAMES))


def test_hash_stdin_gives_the_same_digests_with_and_without_openssl(tmp_path: Path) -> None:
    """hash_stdin (lib/hash) uses openssl where it is installed, coreutils' sha*sum elsewhere: both
    print the digest first, which is all its callers read."""
    data = b"archive bytes\n" * 1000
    (tmp_path / "juju-backup").mkdir()
    (tmp_path / "f").write_bytes(data)
    call = 'for a in sha1 sha256; do read -r h _ < <(hash_stdin "$a" <"$1/../f"); echo "$h"; done'
    with_openssl = _run(tmp_path, call).split()
    bin_dir = tmp_path / "bin"  # a PATH without openssl: only what hash_stdin's fallback needs
    bin_dir.mkdir()
    for tool in ("sha1sum", "sha256sum"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True,
                                                   check=True).stdout.strip())
    without = _run(tmp_path, f'PATH={bin_dir}; ' + call).split()
    want = [hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()]
    assert with_openssl == want and without == want
