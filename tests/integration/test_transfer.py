"""download / upload / verify against lab controllers, through the CLI (issue 4 "Done when").

Each test boots its own lab and runs `.venv/bin/jujubackup -F <lab ssh_config> -H ctlN ...`; the
controller's catalog is read through the lab host's root dir.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jujubackup.profiles import BACKUP_DIR_MARKER
from tests.lab.lab import Lab, LabHost
from tests.unit.archive_builders import MISSING_ROOT, MODEL_UUID, VALID, ArchiveSpec, file_info, special_info

pytestmark = pytest.mark.lab

JUJUBACKUP = str(Path(sys.executable).parent / "jujubackup")
BACKUPS = "var/lib/juju/backups"
SYNTH_ID = f"20261126-060001.{MODEL_UUID}"


def jb(lab: Lab, host: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JUJUBACKUP, "-F", str(lab.ssh_config), "-H", host, *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def jb_background(lab: Lab, host: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([JUJUBACKUP, "-F", str(lab.ssh_config), "-H", host, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def local_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([JUJUBACKUP, "verify", str(path)], capture_output=True, text=True, check=False)


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 120.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.1)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stored(host: LabHost) -> list[str]:
    backups = host.root / BACKUPS
    if not backups.exists():
        return []
    return sorted(p.name for p in backups.iterdir() if p.name != BACKUP_DIR_MARKER)


def big_archive(tmp_path: Path, mib: int = 6) -> Path:
    """A valid archive with an incompressible member, so a rate-limited transfer can be cut midway."""
    spec = ArchiveSpec()
    spec.metadata = dict(spec.metadata or {}, ID=SYNTH_ID)
    data = os.urandom(mib << 20)
    spec.root = [*spec.root, (file_info("var/lib/juju/tools/2.9.42-focal-amd64/big.bin", data), data)]
    return spec.write(tmp_path / "synthetic.tar.gz")


def test_round_trip_create_download_verify_upload_list_download(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory(controllers=2)
    created = jb(lab, "ctl0", "create", "round trip")
    assert created.returncode == 0, created.stderr
    backup_id = created.stdout.strip().splitlines()[-1]

    first = tmp_path / "first"
    first.mkdir()
    got = jb(lab, "ctl0", "-v", "download", backup_id, "--dir", str(first))
    assert got.returncode == 0, got.stderr
    assert "streamed via paramiko" in got.stderr  # small: no second connection (OpenSSH below)
    archive = Path(got.stdout.strip())
    assert archive == first / f"{backup_id}.tar.gz"
    assert archive.stat().st_mode & 0o777 == 0o600
    record = json.loads((lab.host("ctl0").root / BACKUPS / f"{backup_id}.json").read_text())
    assert sha256(archive) == record["sha256"]
    assert json.loads((first / f"{backup_id}.json").read_text())["ID"] == backup_id

    verified = local_verify(archive)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    up = jb(lab, "ctl1", "-v", "upload", str(archive))
    assert up.returncode == 0, up.stderr
    assert "verified earlier" in up.stderr, up.stderr  # not verified twice: ctl1 checks the SHA-256
    assert up.stdout.strip() == backup_id
    listed = jb(lab, "ctl1", "list", "--format", "json")
    assert backup_id in [row["ID"] for row in json.loads(listed.stdout)]

    second = tmp_path / "second"
    second.mkdir()
    again = jb(lab, "ctl1", "--transfer", "openssh", "-v", "download", backup_id, "--dir", str(second))
    assert again.returncode == 0, again.stderr
    assert "streamed via openssh" in again.stderr  # required: used whatever the size
    assert (second / f"{backup_id}.tar.gz").read_bytes() == archive.read_bytes()

    local = subprocess.run([JUJUBACKUP, "list", "--local", str(second), "--format", "json"],
                           capture_output=True, text=True, check=False)
    assert local.returncode == 0, local.stderr
    rows = json.loads(local.stdout)
    assert [(r["id"], r["verified"], r["size"]) for r in rows] == [(backup_id, "yes", archive.stat().st_size)]


def test_a_verified_archive_changed_since_is_refused_by_the_host_digest(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Upload skips verifying again an archive `verify` passed and that looks unchanged (size, mtime);
    the digest of what the controller received still has to be the verified one."""
    lab = lab_factory()
    ctl = lab.host("ctl0")
    backup_id = jb(lab, "ctl0", "create").stdout.strip().splitlines()[-1]
    got = jb(lab, "ctl0", "download", backup_id, "--dir", str(tmp_path))
    archive = Path(got.stdout.strip())
    assert local_verify(archive).returncode == 0
    jb(lab, "ctl0", "remove", backup_id, "--yes")
    before = stored(ctl)
    stat = archive.stat()
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01  # damaged after the check, size and mtime kept: bit rot
    archive.write_bytes(bytes(data))
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    up = jb(lab, "ctl0", "upload", str(archive))
    assert up.returncode == 8, up.stderr
    assert "changed since it was verified" in up.stderr, up.stderr
    assert stored(ctl) == before
    assert not [p for p in (ctl.root / BACKUPS).iterdir() if p.name.startswith(".upload-")]


@pytest.mark.parametrize("cut", ["client killed", "host dropped the session"])
def test_download_cut_midway_resumes_with_the_right_sha256(lab_factory, tmp_path: Path, cut: str) -> None:  # type: ignore[no-untyped-def]
    """The client is killed, or the controller's end of the stream goes away (its sshd session
    killed: the OpenSSH client exits 255, which is exit 3); either way the partial file is kept and
    the next download continues it."""
    lab = lab_factory()
    ctl = lab.host("ctl0")
    source = big_archive(tmp_path)
    assert jb(lab, "ctl0", "upload", str(source)).returncode == 0
    dest = tmp_path / "copy.tar.gz"
    part = tmp_path / "copy.tar.gz.part"
    client = jb_background(lab, "ctl0", "download", SYNTH_ID, str(dest), "--bwlimit", "1M")
    try:
        wait_for(lambda: part.exists() and part.stat().st_size > 1 << 20, "part of the download")
        if cut == "host dropped the session":
            reader = ctl.ssh(f"pgrep -o -f '^cat -- /{BACKUPS}/'", check=True).stdout.split()[0]
            session = ctl.ssh(f"ps -o ppid= -p {reader}", check=True).stdout.strip()
            ctl.ssh(f"kill -KILL {session}", check=True)
            _, err = client.communicate(timeout=120)
            assert client.returncode == 3, err
            assert "lost while downloading" in err
    finally:
        if client.poll() is None:
            client.send_signal(signal.SIGKILL)
            client.wait()
    kept = part.stat().st_size
    assert not dest.exists() and 0 < kept < source.stat().st_size

    resumed = jb(lab, "ctl0", "download", SYNTH_ID, str(dest))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming download" in resumed.stderr
    assert sha256(dest) == sha256(source)
    assert not part.exists()


def test_upload_cut_midway_resumes_and_registers(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    source = big_archive(tmp_path, 40)  # over upload.PARALLEL_VERIFY_MIN: verified by another process
    staged = ctl.root / BACKUPS / f".upload-{SYNTH_ID}.tar.gz.part"  # the ID is in metadata.json, early
    client = jb_background(lab, "ctl0", "upload", str(source), "--bwlimit", "1M")
    try:
        wait_for(lambda: staged.exists() and staged.stat().st_size > 1 << 20, "part of the upload")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    assert f"{SYNTH_ID}.json" not in stored(ctl)

    resumed = jb(lab, "ctl0", "-v", "upload", str(source))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming upload" in resumed.stderr
    assert "streamed via openssh" in resumed.stderr  # big: the OpenSSH client, pinned to the host key
    assert sha256(ctl.root / BACKUPS / f"{SYNTH_ID}.tar.gz") == sha256(source)
    assert f"{SYNTH_ID}.json" in stored(ctl)
    assert not staged.exists()


def _flip(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    out = path.with_name("flipped.tar.gz")
    out.write_bytes(bytes(data))
    return out


def _truncate(path: Path) -> Path:
    out = path.with_name("truncated.tar.gz")
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


def _with(tmp: Path, member: tuple) -> Path:  # type: ignore[type-arg]
    spec = ArchiveSpec()
    spec.metadata = dict(spec.metadata or {}, ID=SYNTH_ID)
    spec.extra = [member]
    return spec.write(tmp / "unsafe.tar.gz")


def _with_root(tmp: Path, name: str) -> Path:
    """A valid archive whose root.tar also carries `name` (not a Juju state file)."""
    spec = ArchiveSpec()
    spec.metadata = dict(spec.metadata or {}, ID=SYNTH_ID)
    spec.root = [*spec.root, (file_info(name, b"* * * * * root sh\n"), b"* * * * * root sh\n")]
    return spec.write(tmp / "evil-root.tar.gz")


def _with_metadata(tmp: Path, **fields: str) -> Path:
    """A valid archive whose metadata.json carries hostile identity fields."""
    spec = ArchiveSpec()
    spec.metadata = dict(spec.metadata or {}, **fields)
    return spec.write(tmp / "hostile-id.tar.gz")


BAD = {
    "path in ModelUUID": (lambda tmp: _with_metadata(tmp, ID="", ModelUUID="../../tmp/evil"),
                          "metadata ModelUUID '../../tmp/evil' is not a UUID"),
    "path in ID": (lambda tmp: _with_metadata(tmp, ID="20261126-060001.x/../../y"),
                   "is not of the form YYYYMMDD-hhmmss.<uuid>"),
    "cron job in root.tar": (lambda tmp: _with_root(tmp, "etc/cron.d/evil"),
                             "root.tar member 'etc/cron.d/evil' is not a Juju state file"),
    "root's keys in root.tar": (lambda tmp: _with_root(tmp, "root/.ssh/authorized_keys"),
                                "root.tar member 'root/.ssh/authorized_keys' is not a Juju state file"),
    "flipped byte": (lambda tmp: _flip(big_archive(tmp, 1)), "corrupt"),
    "truncated": (lambda tmp: _truncate(big_archive(tmp, 1)), "truncated"),
    "dotdot": (lambda tmp: _with(tmp, (file_info("juju-backup/../x", b"x"), b"x")), ".."),
    "absolute": (lambda tmp: _with(tmp, (file_info("/etc/evil", b"x"), b"x")), "/etc/evil"),
    "symlink escape": (
        lambda tmp: _with(tmp, (special_info("juju-backup/esc", tarfile.SYMTYPE, "../../../etc"), None)),
        "esc"),
    "missing root": (lambda tmp: MISSING_ROOT, "root.tar"),
}


def test_bad_archives_are_refused_with_exit_8_and_nothing_registered(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    before = stored(ctl)
    for kind, (make, named) in BAD.items():
        case = tmp_path / kind.replace(" ", "-")
        case.mkdir()
        bad = make(case)
        verified = local_verify(bad)
        assert verified.returncode == 8, (kind, verified.stderr)
        assert named in verified.stdout + verified.stderr, (kind, verified.stdout, verified.stderr)
        up = jb(lab, "ctl0", "upload", str(bad))
        assert up.returncode == 8, (kind, up.stderr)
        assert named in up.stderr, (kind, up.stderr)
        assert stored(ctl) == before, kind
    assert not (ctl.root / "etc/cron.d/evil").exists()
    assert not list((ctl.root / "tmp").glob("evil*")), "a hostile ID reached a remote path"


def test_bad_upload_stops_and_leaves_nothing_staged_or_registered(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Verification runs (another process) while the bytes stream: damage past the first MiBs fails
    the upload; the staged file (also one kept from an earlier cut upload of it) is removed."""
    lab = lab_factory()
    ctl = lab.host("ctl0")
    good = big_archive(tmp_path, 40)  # over upload.PARALLEL_VERIFY_MIN
    bad = good.with_name("damaged.tar.gz")
    data = bytearray(good.read_bytes())
    data[len(data) * 3 // 4] ^= 0x01
    bad.write_bytes(bytes(data))
    backups = ctl.root / BACKUPS
    backups.mkdir(mode=0o700, parents=True, exist_ok=True)
    before = stored(ctl)
    earlier = backups / f".upload-{SYNTH_ID}.tar.gz.part"
    earlier.write_bytes(bytes(data[: 2 << 20]))

    up = jb(lab, "ctl0", "upload", str(bad))
    assert up.returncode == 8, up.stderr
    assert "did not verify" in up.stderr and "corrupt" in up.stderr, up.stderr
    assert stored(ctl) == before
    assert not [p for p in backups.iterdir() if p.name.startswith(".upload-")]
    listed = jb(lab, "ctl0", "list", "--format", "json")
    assert SYNTH_ID not in listed.stdout


def test_damaged_stored_copy_fails_download_and_verify_id(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lab = lab_factory()
    ctl = lab.host("ctl0")
    assert jb(lab, "ctl0", "upload", str(big_archive(tmp_path, 1))).returncode == 0
    ok = jb(lab, "ctl0", "verify", SYNTH_ID)
    assert ok.returncode == 0, ok.stderr
    assert "ok   sha256" in ok.stdout
    stored_file = ctl.root / BACKUPS / f"{SYNTH_ID}.tar.gz"
    data = bytearray(stored_file.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored_file.write_bytes(bytes(data))
    bad = jb(lab, "ctl0", "verify", SYNTH_ID)
    assert bad.returncode == 8, bad.stderr
    dest = tmp_path / "copy.tar.gz"
    refused = jb(lab, "ctl0", "download", SYNTH_ID, str(dest))
    assert refused.returncode == 8, refused.stderr
    assert "does not match the catalog" in refused.stderr
    assert not dest.exists() and not dest.with_name("copy.tar.gz.part").exists()


def test_verify_and_info_show_jujus_metadata_for_the_28_fixture(lab_factory) -> None:  # type: ignore[no-untyped-def]
    verified = local_verify(VALID)
    assert verified.returncode == 0, verified.stderr
    for shown in ("2.8-beta1.1", "juju-53ab97-0", "bionic", MODEL_UUID, "format-version: 0"):
        assert shown in verified.stdout

    lab = lab_factory(profile="juju-2.8")
    up = jb(lab, "ctl0", "upload", str(VALID))
    assert up.returncode == 0, up.stderr
    backup_id = up.stdout.strip()
    info = jb(lab, "ctl0", "info", backup_id, "--format", "json")
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert (doc["Version"], doc["Hostname"], doc["Machine"], doc["Series"]) == (
        "2.8-beta1.1", "juju-53ab97-0", "0", "bionic")


def test_upload_onto_a_nearly_full_fs_is_refused_with_need_and_have(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # upload had no free-space check: it could fill juju-db's filesystem to 100 % (issue 11)
    lab = lab_factory()
    ctl = lab.host("ctl0")
    source = big_archive(tmp_path, 6)
    mounted = ctl.ssh(f"mkdir -p /{BACKUPS} && mount -t tmpfs -o size=4m,mode=0700 tmpfs /{BACKUPS}")
    assert mounted.returncode == 0, mounted.stderr
    try:
        done = jb(lab, "ctl0", "upload", str(source))
        assert done.returncode == 6, done.stderr
        assert f"not enough free space in /{BACKUPS} on ctl0: need 6." in done.stderr, done.stderr
        assert "have 4.0 MiB" in done.stderr and "hint: free some space" in done.stderr
        assert ctl.ssh(f"ls -A /{BACKUPS}", check=True).stdout.strip() == ""  # nothing made, no part
    finally:
        ctl.ssh(f"umount /{BACKUPS}")


def test_partial_uploads_are_listed_and_cleaned_by_remove_and_upload(lab_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # a cut upload left a hidden .upload-….part that list did not show and remove never cleaned (issue 11)
    lab = lab_factory()
    ctl = lab.host("ctl0")
    source = big_archive(tmp_path, 1)
    part = ctl.root / BACKUPS / f".upload-{SYNTH_ID}.tar.gz.part"
    ctl.ssh(f"mkdir -p -m 0700 /{BACKUPS}", check=True)
    part.write_bytes(source.read_bytes()[: 1 << 19])  # what an upload cut after 512 KiB leaves
    listed = jb(lab, "ctl0", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"partial upload {SYNTH_ID} (512.0 KiB" in listed.stderr
    assert f"`remove {SYNTH_ID}` deletes it" in listed.stderr
    removed = jb(lab, "ctl0", "remove", SYNTH_ID)  # never registered: removed without asking
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.split() == [SYNTH_ID] and not part.exists()
    assert "partial upload" not in jb(lab, "ctl0", "list").stderr

    part.write_bytes(b"x" * 4096)  # a part that is no prefix of the archive: the next upload replaces it
    up = jb(lab, "ctl0", "upload", str(source))
    assert up.returncode == 0, up.stderr
    assert "starting over" in up.stderr
    assert not part.exists() and f"{SYNTH_ID}.json" in stored(ctl)
    assert sha256(ctl.root / BACKUPS / f"{SYNTH_ID}.tar.gz") == sha256(source)
