"""download / upload / verify operations over a real SSHHost (throwaway sshd on 127.0.0.1) with the
controller's catalog in a temporary backup dir: round trips, resume, refusals (exit 8) that register
nothing, sidecars and `list --local`."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from jujubackup.catalog import Catalog
from jujubackup.errors import EXIT_REFUSED, EXIT_VERIFY, JujuBackupError, RefusedError, VerifyError
from jujubackup.host.ssh import SSHHost
from jujubackup.host.target import SSHTarget
from jujubackup.local_archives import list_local_rows, sidecar_path
from jujubackup.operations.download import DownloadRequest, download
from jujubackup.operations.upload import UploadRequest, upload
from jujubackup.operations.verify import VerifyRequest, verify_local, verify_stored
from jujubackup.profiles import BACKUP_DIR_MARKER
from jujubackup.restore import execute as X
from jujubackup.transfer import parse_rate
from jujubackup.ui import UI
from tests.host.local_sshd import LocalSSHD, local_sshd
from tests.unit.archive_builders import MISSING_ROOT, MODEL_UUID, VALID, ArchiveSpec, file_info, special_info

pytestmark = pytest.mark.host  # root: a loopback sshd, mounts or root-owned files (no lab)

ID = f"20261126-060001.{MODEL_UUID}"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSSHD]:
    with local_sshd(tmp_path_factory.mktemp("sshd") / "server") as server:
        yield server


@pytest.fixture
def host(sshd: LocalSSHD) -> Iterator[SSHHost]:
    target = SSHTarget(name="local", hostname="127.0.0.1", port=sshd.port, user="root",
                       identity_files=(sshd.key,), known_hosts=(sshd.known_hosts,))
    with SSHHost.connect(target) as connected:
        yield connected


@pytest.fixture
def ui() -> UI:
    return UI(quiet=True, err=Console(file=io.StringIO()))


def archive(tmp_path: Path, name: str = "a.tar.gz", **changes: object) -> Path:
    spec = ArchiveSpec()
    spec.metadata = dict(spec.metadata or {}, ID=ID)
    for key, value in changes.items():
        setattr(spec, key, value)
    # an incompressible root.tar member so transfers span several 1 MiB chunks
    big = os.urandom(3 * 1024 * 1024)
    spec.root = [*spec.root, (file_info("var/lib/juju/tools/2.9.42-focal-amd64/big.bin", big), big)]
    return spec.write(tmp_path / name)


def juju_machine(file: Path, *, backup_dir: str, **fields: object) -> UploadRequest:
    """An UploadRequest to this machine, made to look like a Juju machine: a machine agent.conf
    in an agents dir next to the (temporary) backup dir (upload refuses a host without one)."""
    agents = Path(backup_dir).parent / "agents"
    (agents / "machine-0").mkdir(parents=True, exist_ok=True)
    (agents / "machine-0" / "agent.conf").write_text("tag: machine-0\n")
    return UploadRequest(file, backup_dir=backup_dir, agents_dir=str(agents), **fields)  # type: ignore[arg-type]


def test_upload_to_a_host_that_is_no_juju_machine_is_refused(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    request = UploadRequest(source, backup_dir=str(backups), agents_dir=str(tmp_path / "no-agents"))
    with pytest.raises(RefusedError, match=r"not a Juju machine: no machine agent\.conf") as caught:
        upload(host, request, ui)
    assert caught.value.exit_code == EXIT_REFUSED
    assert not backups.exists()


def stored_files(backups: Path) -> list[str]:
    """Return the backup dir's entries, without the marker that makes it jujubackup's own."""
    if not backups.exists():
        return []
    return sorted(p.name for p in backups.iterdir() if p.name != BACKUP_DIR_MARKER)


def test_upload_then_download_round_trip(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    result = upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    assert result.id == ID
    assert stored_files(backups) == [f"{ID}.json", f"{ID}.tar.gz"]
    assert (backups / f"{ID}.tar.gz").read_bytes() == source.read_bytes()
    assert (backups / f"{ID}.tar.gz").stat().st_mode & 0o777 == 0o600

    out = tmp_path / "out"
    out.mkdir()
    got = download(host, DownloadRequest("latest", directory=out, backup_dir=str(backups)), ui)
    assert got.path == out / f"{ID}.tar.gz"
    assert got.path.read_bytes() == source.read_bytes()
    assert got.path.stat().st_mode & 0o777 == 0o600
    assert sidecar_path(got.path).stat().st_mode & 0o777 == 0o600
    assert stored_files(out) == [f"{ID}.json", f"{ID}.tar.gz"]
    rows = list_local_rows(out)
    assert [(r["id"], r["verified"], r["size"]) for r in rows] == [(ID, "yes", source.stat().st_size)]

    # the downloaded copy (with its sidecar) uploads to another controller under the same ID
    other = tmp_path / "other-backups"
    again = upload(host, juju_machine(got.path, backup_dir=str(other)), ui)
    assert again.id == ID
    assert (other / f"{ID}.tar.gz").read_bytes() == source.read_bytes()


def test_upload_refuses_an_existing_id_unless_forced(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = str(tmp_path / "backups")
    upload(host, juju_machine(source, backup_dir=backups), ui)
    with pytest.raises(RefusedError) as caught:
        upload(host, juju_machine(source, backup_dir=backups), ui)
    assert caught.value.exit_code == EXIT_REFUSED
    assert upload(host, juju_machine(source, force=True, backup_dir=backups), ui).id == ID


def test_juju_made_archive_uploads_and_lists(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    result = upload(host, juju_machine(VALID, backup_dir=str(backups)), ui)
    assert result.id == f"20200225-041241.{MODEL_UUID}"
    record = Catalog(host, str(backups)).get("latest")
    assert (record.id, record.metadata.version, record.metadata.hostname) == (
        result.id, "2.8-beta1.1", "juju-53ab97-0")


class _Stop(Exception):
    pass


def test_interrupted_download_resumes_from_its_partial(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = str(tmp_path / "backups")
    upload(host, juju_machine(source, backup_dir=backups), ui)
    dest = tmp_path / "copy.tar.gz"
    seen: list[int] = []

    def stop_after_first_chunk(n: int) -> None:
        seen.append(n)
        raise _Stop

    host_get = host.get

    def interrupted_get(path, sink, *, offset=0, progress=None, size=None):  # type: ignore[no-untyped-def]
        return host_get(path, sink, offset=offset, progress=stop_after_first_chunk, size=size)

    host.get = interrupted_get  # type: ignore[method-assign]
    with pytest.raises(_Stop):
        download(host, DownloadRequest(ID, file=dest, backup_dir=backups), ui)
    del host.get
    part = tmp_path / "copy.tar.gz.part"
    assert not dest.exists() and 0 < part.stat().st_size < source.stat().st_size
    result = download(host, DownloadRequest(ID, file=dest, backup_dir=backups), ui)
    assert result.resumed_from == seen[0]
    assert dest.read_bytes() == source.read_bytes()
    assert not part.exists()


def test_partial_that_does_not_match_is_restarted(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = str(tmp_path / "backups")
    upload(host, juju_machine(source, backup_dir=backups), ui)
    dest = tmp_path / "copy.tar.gz"
    (tmp_path / "copy.tar.gz.part").write_bytes(b"garbage" * 100)
    result = download(host, DownloadRequest(ID, file=dest, backup_dir=backups), ui)
    assert result.resumed_from == 0
    assert dest.read_bytes() == source.read_bytes()


def test_upload_resumes_a_matching_staged_prefix(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o700)
    half = source.stat().st_size // 2
    staged = Path(Catalog(host, str(backups)).staging_path(ID))
    staged.write_bytes(source.read_bytes()[:half])
    result = upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    assert result.resumed_from == half
    assert (backups / f"{ID}.tar.gz").read_bytes() == source.read_bytes()
    assert not staged.exists()


def test_damaged_stored_copy_is_not_renamed_into_place(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    stored = backups / f"{ID}.tar.gz"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    dest = tmp_path / "copy.tar.gz"
    with pytest.raises(VerifyError) as caught:
        download(host, DownloadRequest(ID, file=dest, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_VERIFY
    assert "does not match the catalog" in caught.value.message
    assert not dest.exists() and not (tmp_path / "copy.tar.gz.part").exists()
    report = verify_stored(host, VerifyRequest(ID, backup_dir=str(backups)), ui)
    assert not report.ok
    assert any(c.name == "sha256" and not c.ok for c in report.checks)


def test_verify_id_checks_the_stored_copy_in_place(host: SSHHost, ui: UI, tmp_path: Path) -> None:
    source = archive(tmp_path)
    backups = str(tmp_path / "backups")
    upload(host, juju_machine(source, backup_dir=backups), ui)
    report = verify_stored(host, VerifyRequest(ID[:10], backup_dir=backups), ui)
    assert report.ok, report.failures
    assert report.metadata is not None and report.metadata.id == ID
    assert {c.name for c in report.checks} >= {"readable", "members", "metadata", "manifest", "sha256"}


def _flipped(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    out = path.with_name("flipped.tar.gz")
    out.write_bytes(bytes(data))
    return out


def _truncated(path: Path) -> Path:
    out = path.with_name("truncated.tar.gz")
    out.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return out


BAD_ARCHIVES = {
    "flipped byte": lambda tmp: _flipped(archive(tmp)),
    "truncated": lambda tmp: _truncated(archive(tmp)),
    "../x member": lambda tmp: archive(tmp, extra=[(file_info("juju-backup/../x", b"x"), b"x")]),
    "absolute member": lambda tmp: archive(tmp, extra=[(file_info("/etc/evil", b"x"), b"x")]),
    "symlink escaping": lambda tmp: archive(
        tmp, extra=[(special_info("juju-backup/escape", tarfile.SYMTYPE, "../../../etc/passwd"), None)]),
    "missing root.tar": lambda tmp: MISSING_ROOT,
}


@pytest.mark.parametrize("kind", sorted(BAD_ARCHIVES))
def test_bad_archives_are_refused_and_nothing_is_registered(
    host: SSHHost, ui: UI, tmp_path: Path, kind: str
) -> None:
    bad = BAD_ARCHIVES[kind](tmp_path)
    backups = tmp_path / "backups"
    with pytest.raises(JujuBackupError) as caught:
        upload(host, juju_machine(bad, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_VERIFY, caught.value.message
    assert stored_files(backups) == []
    assert not verify_local(bad).ok


def test_parse_rate() -> None:
    assert parse_rate("500K") == 500 * 1024
    assert parse_rate("20M") == 20 * 1024**2
    assert parse_rate("1.5G") == int(1.5 * 1024**3)
    assert parse_rate("1000") == 1000
    assert parse_rate("0") is None
    with pytest.raises(JujuBackupError):
        parse_rate("fast")


def test_hashing_sink_writes_and_hashes_every_byte_while_starting_writeback(tmp_path: Path) -> None:
    """Writeback is started every WRITEBACK_EVERY bytes (a resumed file: from its offset on);
    the file and the digest still hold every byte, and a non-file sink works too."""
    import hashlib
    import sys

    from jujubackup import transfer

    if sys.platform.startswith("linux"):
        assert transfer._SYNC_FILE_RANGE is not None
    data = os.urandom(3 << 20)
    path = tmp_path / "part"
    path.write_bytes(b"kept prefix")
    hasher = hashlib.sha256(b"kept prefix")
    with path.open("ab") as fh:
        sink = transfer.HashingSink(fh, hasher, transfer.Throttle(None))
        for _ in range(transfer.WRITEBACK_EVERY * 2 // len(data) + 1):
            sink.write(data)
    written = path.read_bytes()
    assert written.startswith(b"kept prefix") and len(written) == 11 + len(data) * (
        transfer.WRITEBACK_EVERY * 2 // len(data) + 1
    )
    assert hasher.hexdigest() == hashlib.sha256(written).hexdigest()
    memory = io.BytesIO()
    small = transfer.HashingSink(memory, hashlib.sha256(), transfer.Throttle(None))
    for _ in range(transfer.WRITEBACK_EVERY // len(data) + 1):
        small.write(data)
    assert memory.getvalue() == data * (transfer.WRITEBACK_EVERY // len(data) + 1)


def test_a_full_size_but_wrong_pushed_archive_is_pushed_again_on_resume(
    host: SSHHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a resume appended to what an earlier push left: a full-size but wrong copy failed every
    # --resume the same way until the journal dir was removed by hand (issue 11)
    from tests.unit.test_restore_execute import PARAMS

    data = VALID.read_bytes()
    wrong = bytearray(data)
    wrong[len(wrong) // 2] ^= 0x01
    pushed = tmp_path / "journal" / "archive.tar.gz"
    pushed.parent.mkdir()
    pushed.write_bytes(bytes(wrong))
    monkeypatch.setattr(X, "ARCHIVE", str(pushed))
    want = hashlib.sha256(data).hexdigest()
    params = replace(PARAMS, sha256=want, size=len(data))
    journal = X.Journal(exists=True, params=params, archive_bytes=len(data))
    assert X.push_archive(host, params, X.Upload(VALID), journal, None) == want
    assert pushed.read_bytes() == data


@pytest.fixture
def openssh_host(sshd: LocalSSHD) -> Iterator[SSHHost]:
    """The same sshd, archives always through the OpenSSH client (small ones too)."""
    target = SSHTarget(name="local", hostname="127.0.0.1", port=sshd.port, user="root",
                       identity_files=(sshd.key,), known_hosts=(sshd.known_hosts,), stream_via="openssh")
    with SSHHost.connect(target) as connected:
        yield connected


def test_openssh_writes_the_download_into_the_part_and_it_is_verified_resumed_or_refused(
    openssh_host: SSHHost, ui: UI, tmp_path: Path
) -> None:
    """Through OpenSSH without --bwlimit, `ssh` itself writes the `.part` (issue 18): the round trip,
    a resume from a kept prefix, and a damaged stored copy (exit 8, partial removed) behave as over
    the Python path."""
    host = openssh_host
    source = archive(tmp_path)
    backups = tmp_path / "backups"
    upload(host, juju_machine(source, backup_dir=str(backups)), ui)
    written: list[int] = []
    real = host._streams()
    assert real is not None
    get_file = real.get_file

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        written.append(1)
        return get_file(*args, **kwargs)

    real.get_file = counting  # type: ignore[method-assign]
    dest = tmp_path / "copy.tar.gz"
    got = download(host, DownloadRequest(ID, file=dest, backup_dir=str(backups)), ui)
    assert (written, host.streams_via) == ([1], "openssh")
    assert dest.read_bytes() == source.read_bytes() and dest.stat().st_mode & 0o777 == 0o600
    assert got.resumed_from == 0

    again = tmp_path / "again.tar.gz"
    half = source.stat().st_size // 2
    (tmp_path / "again.tar.gz.part").write_bytes(source.read_bytes()[:half])
    resumed = download(host, DownloadRequest(ID, file=again, backup_dir=str(backups)), ui)
    assert resumed.resumed_from == half and len(written) == 2
    assert again.read_bytes() == source.read_bytes()

    stored = backups / f"{ID}.tar.gz"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    damaged = tmp_path / "damaged.tar.gz"
    with pytest.raises(VerifyError) as caught:
        download(host, DownloadRequest(ID, file=damaged, backup_dir=str(backups)), ui)
    assert caught.value.exit_code == EXIT_VERIFY and len(written) == 3
    assert not damaged.exists() and not (tmp_path / "damaged.tar.gz.part").exists()

    limited = tmp_path / "limited.tar.gz"
    stored.write_bytes(source.read_bytes())
    download(host, DownloadRequest(ID, file=limited, backup_dir=str(backups), bwlimit=10 << 20), ui)
    assert len(written) == 3 and limited.read_bytes() == source.read_bytes()


def test_openssh_reads_the_pushed_archive_itself_and_a_resume_appends_to_the_kept_bytes(
    openssh_host: SSHHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restore's push through OpenSSH: `ssh` reads the archive file itself (put_file), from the
    resume offset on; the host's SHA-256 is of the whole pushed file."""
    from tests.unit.test_restore_execute import PARAMS

    data = VALID.read_bytes()
    pushed = tmp_path / "journal" / "archive.tar.gz"
    pushed.parent.mkdir()
    monkeypatch.setattr(X, "ARCHIVE", str(pushed))
    params = replace(PARAMS, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    real = openssh_host._streams()
    assert real is not None
    direct: list[int] = []
    put_file = real.put_file

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        direct.append(1)
        return put_file(*args, **kwargs)

    real.put_file = counting  # type: ignore[method-assign]
    fresh = X.Journal(exists=True, params=params, archive_bytes=0)
    assert X.push_archive(openssh_host, params, X.Upload(VALID), fresh, None) == params.sha256
    assert pushed.read_bytes() == data and direct == [1]
    pushed.write_bytes(data[:1000])
    kept = X.Journal(exists=True, params=params, archive_bytes=1000)
    assert X.push_archive(openssh_host, params, X.Upload(VALID), kept, None) == params.sha256
    assert pushed.read_bytes() == data and direct == [1, 1]
