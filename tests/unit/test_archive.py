"""archive.py: streaming verification, member safety, reading, rewriting, safe extraction."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from pathlib import Path

import bson
import pytest

from jujubackup import archive
from jujubackup.errors import EXIT_VERIFY, NotFoundError, VerifyError
from jujubackup.profiles import PROFILES, Profile
from tests.unit.archive_builders import (
    AGENT_CONF,
    MISSING_ROOT,
    VALID,
    ArchiveSpec,
    bson_file,
    dir_info,
    file_info,
    special_info,
    tar_bytes,
)


def failed_messages(report: archive.VerifyReport) -> list[str]:
    return [c.message for c in report.failures]


def only_failure(report: archive.VerifyReport) -> str:
    msgs = failed_messages(report)
    assert len(msgs) == 1, msgs
    return msgs[0]


# --- the real Juju fixtures ------------------------------------------------------------------


def test_valid_fixture_verifies_with_juju_metadata() -> None:
    report = archive.verify_archive(VALID)
    assert report.ok, failed_messages(report)
    md = report.metadata
    assert md is not None
    assert (md.format_version, md.machine, md.ha_nodes) == (0, "0", 3)
    data = VALID.read_bytes()
    assert report.digest == archive.ArchiveDigest(
        hashlib.sha256(data).hexdigest(), base64.b64encode(hashlib.sha1(data).digest()).decode(), len(data)
    )
    assert sorted(report.dump_files) == [
        "dump/juju/clouds.bson",
        "dump/juju/machines.bson",
        "dump/juju/models.bson",
    ]
    by_name = {m.path: m for m in report.root_members}
    link = by_name["var/lib/juju/tools/machine-0"]
    assert (link.kind, link.linkname) == ("symlink", "/var/lib/juju/tools/2.8-beta1-bionic-amd64")
    conf = by_name["var/lib/juju/agents/machine-0/agent.conf"]
    assert (conf.kind, stat.S_IMODE(conf.mode)) == ("file", 0o600)
    assert {c.name for c in report.checks} == {
        "readable",
        "members",
        "metadata",
        "root.tar",
        "dump",
        "manifest",
    }
    report.raise_for_failures()  # no error


def test_valid_fixture_with_expected_digests() -> None:
    data = VALID.read_bytes()
    sha1 = base64.b64encode(hashlib.sha1(data).digest()).decode()
    good = archive.verify_archive(
        VALID,
        expected_sha256=hashlib.sha256(data).hexdigest(),
        expected_sha1_b64=sha1,
        expected_size=len(data),
    )
    assert good.ok
    bad = archive.verify_archive(VALID, expected_sha256="0" * 64)
    assert "SHA-256" in only_failure(bad) and "does not match" in only_failure(bad)


def test_missing_root_fixture_fails_naming_root_tar() -> None:
    report = archive.verify_archive(MISSING_ROOT)
    assert only_failure(report) == "juju-backup/root.tar is missing (the archive has no state files)"
    with pytest.raises(VerifyError) as err:
        report.raise_for_failures()
    assert err.value.exit_code == EXIT_VERIFY
    assert "root.tar is missing" in str(err.value) and str(MISSING_ROOT) in str(err.value)


def test_missing_file_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        archive.verify_archive("/nonexistent/juju-backup.tar.gz")


# --- damaged archives --------------------------------------------------------------------------


def test_built_archive_with_manifest_verifies(tmp_path: Path) -> None:
    report = archive.verify_archive(ArchiveSpec().write(tmp_path / "a.tar.gz"))
    assert report.ok, failed_messages(report)
    assert report.manifest is not None and len(report.manifest["files"]) == 5


def test_built_archive_digests_are_those_of_its_bytes(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)  # several chunks through the hashing thread
    path = ArchiveSpec(extra=[(file_info("juju-backup/big", big), big)]).write(tmp_path / "a.tar.gz")
    data = path.read_bytes()
    digest = archive.verify_archive(path).digest
    assert digest == archive.ArchiveDigest(
        hashlib.sha256(data).hexdigest(), base64.b64encode(hashlib.sha1(data).digest()).decode(), len(data))


def test_verifying_stops_its_hashing_thread_when_interrupted(tmp_path: Path) -> None:
    data = ArchiveSpec().write(tmp_path / "a.tar.gz").read_bytes()

    class Interrupted(io.BytesIO):
        def read(self, n: int | None = -1) -> bytes:
            if self.tell() > len(data) // 2:
                raise KeyboardInterrupt
            return super().read(min(n or 4096, 4096))

    with pytest.raises(KeyboardInterrupt):
        archive.verify_stream(Interrupted(data), label="x")
    assert not [t for t in threading.enumerate() if t.name == "jujubackup-hash"]


def test_flipped_byte_fails(tmp_path: Path) -> None:
    path = ArchiveSpec().write(tmp_path / "a.tar.gz")
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    report = archive.verify_archive(path, expected_sha256=good)
    names = {c.name for c in report.failures}
    assert "sha256" in names
    assert names & {"readable", "manifest", "root.tar", "dump", "metadata"}, failed_messages(report)


def test_flipped_byte_without_expected_digest_still_fails(tmp_path: Path) -> None:
    path = ArchiveSpec().write(tmp_path / "a.tar.gz")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert not archive.verify_archive(path).ok


def test_truncated_file_fails(tmp_path: Path) -> None:
    path = ArchiveSpec().write(tmp_path / "a.tar.gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    report = archive.verify_archive(path, expected_size=len(data))
    readable = [c for c in report.checks if c.name == "readable"]
    assert not readable[0].ok and "truncated or corrupt" in readable[0].message
    assert any(c.name == "size" and not c.ok for c in report.checks)


def test_dot_dot_member_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(extra=[(file_info("juju-backup/../x", b"x"), b"x")])
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == "member 'juju-backup/../x' has a '..' component"


def test_absolute_member_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(extra=[(file_info("/etc/cron.d/evil", b"x"), b"x")])
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == "member '/etc/cron.d/evil' is an absolute path"


def test_member_outside_top_folder_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(extra=[(file_info("other/x", b"x"), b"x")])
    assert "is outside the juju-backup/ folder" in only_failure(
        archive.verify_archive(spec.write(tmp_path / "a"))
    )


def test_symlink_escaping_root_in_root_tar_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/evil", tarfile.SYMTYPE, "../../../../etc/shadow"), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == (
        "root.tar member 'var/lib/juju/evil' is a symlink whose target '../../../../etc/shadow' "
        "escapes the root"
    )


def test_absolute_symlink_in_outer_archive_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(extra=[(special_info("juju-backup/dump/x", tarfile.SYMTYPE, "/etc/passwd"), None)])
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == "member 'juju-backup/dump/x' is a symlink to the absolute path '/etc/passwd'"


def test_symlink_climbing_out_of_another_symlink_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    up = special_info("var/lib/juju/tools/up", tarfile.SYMTYPE, "/var/lib/juju/tools/a/b")
    spec.root.append((up, None))
    spec.root.append((special_info("var/lib/juju/tools/out", tarfile.SYMTYPE, "up/../x"), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert "'var/lib/juju/tools/out'" in msg and "climbs out of another symlink" in msg


# --- root.tar allowlist: only Juju state files may be extracted onto / -------------------------


@pytest.mark.parametrize(
    "name",
    [
        "etc/cron.d/evil",
        "root/.ssh/authorized_keys",
        "etc/systemd/system/jujud-machine-0.service",
        "var/lib/juju/db/evil",
        "var/lib/juju/agents/unit-controller-0/agent.conf",
        "home/ubuntu/.bashrc",
        "usr/bin/sudo",
    ],
)
def test_root_tar_member_outside_the_juju_state_files_fails(tmp_path: Path, name: str) -> None:
    spec = ArchiveSpec()
    spec.root.append((file_info(name, b"* * * * * root sh\n"), b"* * * * * root sh\n"))
    report = archive.verify_archive(spec.write(tmp_path / "a.tar.gz"))
    assert only_failure(report) == f"root.tar member {name!r} is not a Juju state file"
    with pytest.raises(VerifyError) as caught:
        report.raise_for_failures()
    assert caught.value.exit_code == EXIT_VERIFY
    assert f"root.tar member {name!r} is not a Juju state file" in caught.value.message


def test_root_tar_directory_outside_the_state_paths_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((dir_info("etc/cron.d"), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == "root.tar member 'etc/cron.d' is not a Juju state file"


def test_root_tar_symlink_to_a_path_outside_the_state_files_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/tools/cron", tarfile.SYMTYPE, "/etc/cron.d"), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == (
        "root.tar member 'var/lib/juju/tools/cron' is a symlink to '/etc/cron.d', "
        "which is not a Juju state path"
    )


def test_root_tar_hard_link_to_a_path_outside_the_state_files_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/tools/shadow", tarfile.LNKTYPE, "etc/shadow"), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == (
        "root.tar member 'var/lib/juju/tools/shadow' is a hard link to 'etc/shadow', "
        "which is not a Juju state file"
    )


def test_root_tar_with_every_era_state_path_verifies(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    for d in (
        "var",
        "var/lib",
        "var/lib/juju",
        "var/lib/juju/init",
        "var/snap",
        "var/snap/juju-db",
        "var/snap/juju-db/common",
        "home",
        "home/ubuntu",
        "home/ubuntu/.ssh",
    ):
        spec.root.append((dir_info(d), None))
    for name in (
        "var/lib/juju/init/juju-db/juju-db.service",
        "var/snap/juju-db/common/shared-secret",
        "var/snap/juju-db/common/ca.crt",
        "var/snap/juju-db/common/server.pem",
    ):
        spec.root.append((file_info(name, b"x"), b"x"))
    report = archive.verify_archive(spec.write(tmp_path / "a.tar.gz"))
    assert report.ok, failed_messages(report)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_file_create_puts_into_root_tar_is_allowed(profile: Profile) -> None:
    for rule in profile.root_files:
        for candidate in rule.candidates:
            name = candidate.lstrip("/").replace("*", "7")
            assert archive.is_state_path(name), name
            if name.endswith(("/machine-7", "/tools", "/init")):  # directories: what tar puts under them
                assert archive.is_state_path(f"{name}/2.9.42-focal-amd64/jujud"), name


def test_member_written_through_a_symlink_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((file_info("var/lib/juju/tools/machine-0/jujud", b"x"), b"x"))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == (
        "root.tar member 'var/lib/juju/tools/machine-0/jujud' would be written through the symlink "
        "'var/lib/juju/tools/machine-0'"
    )


@pytest.mark.parametrize(
    ("kind", "word"), [(tarfile.CHRTYPE, "device"), (tarfile.BLKTYPE, "device"), (tarfile.FIFOTYPE, "fifo")]
)
def test_device_and_fifo_members_fail(tmp_path: Path, kind: bytes, word: str) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/dev", kind), None))
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg.startswith("root.tar member 'var/lib/juju/dev' is a " + word)


def test_duplicate_member_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((file_info("var/lib/juju/agents/machine-0/agent.conf", b"x"), b"x"))
    assert "appears twice" in only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))


def test_hardlink_with_unsafe_target_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/h", tarfile.LNKTYPE, "../../etc/shadow"), None))
    assert "hard link whose target has a '..'" in only_failure(
        archive.verify_archive(spec.write(tmp_path / "a"))
    )


def test_bad_bson_in_dump_fails_naming_the_file(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.dump["juju/models.bson"] = bson_file({"_id": "a"}) + b"\x20\x00\x00\x00garbage"
    msgs = failed_messages(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msgs == [
        "dump/juju/models.bson is not well-formed BSON: document at byte 16 is truncated (11 of 32 bytes)"
    ]


def test_bson_that_does_not_decode_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    bad = bytearray(bson.encode({"a": "text"}))
    bad[4] = 0x7F  # unknown element type
    spec.dump["juju/models.bson"] = bytes(bad)
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg.startswith("dump/juju/models.bson is not well-formed BSON: document 1 does not decode")


def test_missing_dump_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(dump={}, with_manifest=False)
    path = tmp_path / "a.tar.gz"
    members = [(dir_info("juju-backup"), None)]
    for rel, data in spec.files().items():
        members.append((file_info(f"juju-backup/{rel}", data), data))
    path.write_bytes(tar_bytes(members, compress=True))
    assert only_failure(archive.verify_archive(path)) == (
        "juju-backup/dump/ is missing (the archive has no database dump)"
    )


def test_missing_metadata_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(metadata=None)
    assert (
        only_failure(archive.verify_archive(spec.write(tmp_path / "a")))
        == "juju-backup/metadata.json is missing"
    )


def test_newer_metadata_format_fails_with_clear_message(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    assert spec.metadata is not None
    spec.metadata["FormatVersion"] = 2
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msg == "archive metadata FormatVersion 2 is newer than this jujubackup understands"


def test_manifest_mismatch_names_the_file(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    files = spec.files()
    manifest = archive.build_manifest(
        [archive.ManifestEntry(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()],
        tool_version="0.1.0",
        consistency="online-oplog",
    )
    for entry in manifest["files"]:
        if entry["path"] == "dump/juju/machines.bson":
            entry["sha256"] = "0" * 64
    manifest["files"] = [e for e in manifest["files"] if e["path"] != "dump/oplog.bson"]
    manifest["files"].append({"path": "dump/juju/gone.bson", "size": 1, "sha256": "1" * 64})
    spec.manifest_override = manifest
    msgs = failed_messages(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msgs == [
        "dump/juju/machines.bson SHA-256 "
        + hashlib.sha256(files["dump/juju/machines.bson"]).hexdigest()
        + " does not match the manifest ("
        + "0" * 64
        + ")",
        "manifest lists dump/juju/gone.bson but the archive does not contain it",
        "dump/oplog.bson is in the archive but not in the manifest",
    ]


def test_manifest_of_newer_format_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec(manifest_override={"format-version": 2, "files": []})
    assert "format-version 2" in only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))


def test_report_as_dict_for_json_output() -> None:
    data = archive.verify_archive(MISSING_ROOT).as_dict()
    json.dumps(data)
    assert data["ok"] is False and data["metadata"]["machine"] == "0"
    assert any(c["name"] == "root.tar" and not c["ok"] for c in data["checks"])


# --- streams and reading -----------------------------------------------------------------------


def test_verify_stream_over_a_pipe_like_object() -> None:
    class OnlyRead:
        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self.buf.read(min(n, 1000) if n > 0 else 1000)

    report = archive.verify_stream(OnlyRead(VALID.read_bytes()), label="stdin")  # type: ignore[arg-type]
    assert report.ok and report.digest and report.digest.size == VALID.stat().st_size


def test_iter_bson_documents_splits_and_rejects_bad_lengths() -> None:
    docs = [bson.encode({"_id": i, "v": "x" * i}) for i in range(5)]
    assert list(archive.iter_bson_documents(io.BytesIO(b"".join(docs)))) == docs
    with pytest.raises(ValueError, match="bad document length 2"):
        list(archive.iter_bson_documents(io.BytesIO(b"\x02\x00\x00\x00")))
    with pytest.raises(ValueError, match="truncated length prefix"):
        (list(archive.iter_bson_documents(io.BytesIO(docs[0] + b"\x01"))),)


def test_read_members_and_agent_conf_from_fixture() -> None:
    got = archive.read_members(
        VALID, ["metadata.json", "dump/juju/machines.bson", "nope"], ["var/lib/juju/nonce.txt"]
    )
    assert set(got.files) == {"metadata.json", "dump/juju/machines.bson"}
    assert len(bson.decode_all(got.files["dump/juju/machines.bson"])) == 3
    assert got.root_files == {"var/lib/juju/nonce.txt": b"user-admin:bootstrap\n"}
    conf = archive.read_agent_conf(VALID, "0")
    assert conf.startswith("# format 2.0\ntag: machine-0\n")
    with pytest.raises(VerifyError, match=r"machine-7/agent\.conf"):
        archive.read_agent_conf(VALID, "7")


def test_read_members_refuses_oversized_members() -> None:
    with pytest.raises(VerifyError, match="larger than 100 bytes"):
        archive.read_members(VALID, ["dump/juju/machines.bson"], max_bytes=100)


# --- manifest helpers --------------------------------------------------------------------------


def test_build_manifest_from_a_staging_dir(tmp_path: Path) -> None:
    top = tmp_path / "juju-backup"
    (top / "dump" / "juju").mkdir(parents=True)
    (top / "metadata.json").write_text("{}")
    (top / "dump" / "juju" / "m.bson").write_bytes(b"")
    (top / "manifest.json").write_text("old")
    (top / "link").symlink_to("metadata.json")
    entries = archive.manifest_entries_for_dir(top)
    manifest = archive.build_manifest(
        entries, tool_version="0.1.0", consistency="offline", db_unavailable_seconds={"juju-db": 3.5}
    )
    assert manifest == {
        "format-version": 1,
        "tool": "jujubackup 0.1.0",
        "consistency": "offline",
        "db-unavailable-seconds": {"juju-db": 3.5},
        "files": [
            {"path": "dump/juju/m.bson", "size": 0, "sha256": hashlib.sha256(b"").hexdigest()},
            {"path": "metadata.json", "size": 2, "sha256": hashlib.sha256(b"{}").hexdigest()},
        ],
    }


# --- rewrite -----------------------------------------------------------------------------------


def member_hashes(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {
            m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def test_rewrite_archive_replaces_members_and_updates_manifest(tmp_path: Path) -> None:
    src = ArchiveSpec().write(tmp_path / "src.tar.gz")
    dst = tmp_path / "dst.tar.gz"
    new_bson = bson_file({"_id": "new"})

    def replace(_old: io.BufferedIOBase, out: io.BufferedIOBase) -> None:
        out.write(new_bson)

    result = archive.rewrite_archive(
        src,
        dst,
        transforms={"dump/juju/machines.bson": replace},  # type: ignore[dict-item]
        root_transforms={"var/lib/juju/agents/machine-0/agent.conf": lambda old: old + b"# changed\n"},
    )
    assert result.replaced == ("root.tar", "dump/juju/machines.bson")
    assert result.root_replaced == ("var/lib/juju/agents/machine-0/agent.conf",)
    assert stat.S_IMODE(dst.stat().st_mode) == 0o600
    assert result.digest == archive.digest_file(dst)
    report = archive.verify_archive(dst)
    assert report.ok, failed_messages(report)
    got = archive.read_members(dst, ["dump/juju/machines.bson"], ["var/lib/juju/agents/machine-0/agent.conf"])
    assert got.files["dump/juju/machines.bson"] == new_bson
    assert got.root_files["var/lib/juju/agents/machine-0/agent.conf"] == AGENT_CONF.encode() + b"# changed\n"
    before, after = member_hashes(src), member_hashes(dst)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {
        "juju-backup/root.tar",
        "juju-backup/dump/juju/machines.bson",
        "juju-backup/manifest.json",
    }
    root = {m.path: m for m in report.root_members}
    assert root["var/lib/juju/tools/machine-0"].linkname == "/var/lib/juju/tools/2.9.42-focal-amd64"
    assert stat.S_IMODE(root["var/lib/juju/agents/machine-0/agent.conf"].mode) == 0o600


def test_rewrite_archive_of_unreadable_source_leaves_no_output(tmp_path: Path) -> None:
    src = tmp_path / "src.tar.gz"
    src.write_bytes(VALID.read_bytes()[:5000])
    dst = tmp_path / "dst.tar.gz"
    with pytest.raises(VerifyError, match="truncated or corrupt"):
        archive.rewrite_archive(src, dst)
    assert not dst.exists()


# --- safe extraction ---------------------------------------------------------------------------


def root_tar_of(path: Path) -> bytes:
    return archive.read_members(path, ["root.tar"]).files["root.tar"]


def test_safe_extract_of_fixture_root_tar_keeps_modes_and_symlink(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(root_tar_of(VALID)), mode="r|") as tar:
        names = archive.safe_extract(tar, tmp_path)
    assert "var/lib/juju/agents/machine-0/agent.conf" in names
    conf = tmp_path / "var/lib/juju/agents/machine-0/agent.conf"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert conf.read_text().startswith("# format 2.0\n")
    link = tmp_path / "var/lib/juju/tools/machine-0"
    assert os.readlink(link) == "/var/lib/juju/tools/2.8-beta1-bionic-amd64"


def unsafe_tar(*members: tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]) -> tarfile.TarFile:
    built = [(m, None) if isinstance(m, tarfile.TarInfo) else m for m in members]
    return tarfile.open(fileobj=io.BytesIO(tar_bytes(built)), mode="r|")  # type: ignore[arg-type]


def test_safe_extract_refuses_dot_dot_and_writes_nothing_outside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(VerifyError, match=r"'\.\./x' has a '\.\.' component"):
        archive.safe_extract(unsafe_tar((file_info("../x", b"x"), b"x")), dest)
    assert not (tmp_path / "x").exists()


def test_safe_extract_refuses_writing_through_archive_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    tar = unsafe_tar(special_info("l", tarfile.SYMTYPE, "/tmp"), (file_info("l/x", b"x"), b"x"))
    with pytest.raises(VerifyError, match="written through the symlink 'l'"):
        archive.safe_extract(tar, dest)


def test_safe_extract_refuses_a_destination_symlink_pointing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "var").symlink_to(outside)
    with pytest.raises(VerifyError, match="would land outside"):
        archive.safe_extract(unsafe_tar((file_info("var/x", b"x"), b"x")), dest)
    assert not (outside / "x").exists()


def test_safe_extract_replaces_an_existing_file_symlink_instead_of_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f").symlink_to(victim)
    archive.safe_extract(unsafe_tar((file_info("f", b"new"), b"new")), dest)
    assert victim.read_text() == "keep"
    assert not (dest / "f").is_symlink() and (dest / "f").read_bytes() == b"new"


def test_safe_extract_of_root_tar_refuses_a_file_outside_the_state_files(tmp_path: Path) -> None:
    tar = unsafe_tar(
        (file_info("var/lib/juju/nonce.txt", b"n"), b"n"), (file_info("etc/cron.d/evil", b"x"), b"x")
    )
    with pytest.raises(VerifyError, match=r"member 'etc/cron\.d/evil' is not a Juju state file"):
        archive.safe_extract(tar, tmp_path, state_files_only=True)
    assert not (tmp_path / "etc").exists()


def test_safe_extract_of_fixture_root_tar_with_the_allowlist(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(root_tar_of(VALID)), mode="r|") as tar:
        names = archive.safe_extract(tar, tmp_path, state_files_only=True)
    assert "var/lib/juju/agents/machine-0/agent.conf" in names
    assert (tmp_path / "home/ubuntu/.ssh/authorized_keys").is_file()


def test_safe_extract_refuses_devices(tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="is a device"):
        archive.safe_extract(unsafe_tar(special_info("dev", tarfile.CHRTYPE)), tmp_path)
    assert not (tmp_path / "dev").exists()


def test_late_transform_runs_after_every_other_member(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    rest = {k: v for k, v in spec.dump.items() if k != "oplog.bson"}
    spec.dump = {"oplog.bson": bson_file({"op": "n"}), **rest}  # the oplog comes first in the tar
    src = spec.write(tmp_path / "src.tar.gz")
    seen: list[str] = []

    def early(old: io.BufferedIOBase, out: io.BufferedIOBase) -> None:
        seen.append("machines")
        out.write(old.read())

    def late(old: io.BufferedIOBase, out: io.BufferedIOBase) -> None:
        out.write(bson_file({"seen": list(seen)}) + old.read())

    dst = tmp_path / "dst.tar.gz"
    result = archive.rewrite_archive(
        src,
        dst,
        transforms={"dump/juju/machines.bson": early},  # type: ignore[dict-item]
        late_transforms={"dump/oplog.bson": late},  # type: ignore[dict-item]
    )
    assert result.replaced == ("dump/juju/machines.bson", "dump/oplog.bson")
    report = archive.verify_archive(dst)
    assert report.ok, failed_messages(report)
    files = [m.path for m in report.members if m.kind == "file"]
    assert files[-2:] == ["dump/oplog.bson", "manifest.json"]
    oplog = archive.read_members(dst, ["dump/oplog.bson"]).files["dump/oplog.bson"]
    assert bson.decode_all(oplog) == [{"seen": ["machines"]}, {"op": "n"}]


def test_dates_outside_pythons_range_are_well_formed_bson(tmp_path: Path) -> None:
    from bson.datetime_ms import DatetimeMS

    spec = ArchiveSpec()
    spec.dump["juju/models.bson"] = bson_file({"_id": "m", "d": DatetimeMS(-70_000_000_000_000)})
    report = archive.verify_archive(spec.write(tmp_path / "a.tar.gz"))
    assert report.ok, failed_messages(report)


def test_gzipped_dump_files_are_checked_too(tmp_path: Path) -> None:
    import gzip

    spec = ArchiveSpec()
    spec.dump["juju/models.bson.gz"] = gzip.compress(bson_file({"_id": "a"}, {"_id": "b"}))
    good = archive.verify_archive(spec.write(tmp_path / "good.tar.gz"))
    assert good.ok, failed_messages(good)
    assert "dump/juju/models.bson.gz" in good.dump_files
    spec.dump["juju/models.bson.gz"] = b"not gzip at all"
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "bad-gzip.tar.gz")))
    assert msg.startswith("dump/juju/models.bson.gz is not well-formed BSON: Not a gzipped file")
    spec.dump["juju/models.bson.gz"] = gzip.compress(b"\x03\x00\x00\x00")
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "bad-bson.tar.gz")))
    assert msg == "dump/juju/models.bson.gz is not well-formed BSON: bad document length 3 at byte 0"


def test_hardlink_to_a_symlink_or_through_one_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((special_info("var/lib/juju/h1", tarfile.LNKTYPE, "var/lib/juju/tools/machine-0"), None))
    spec.root.append(
        (special_info("var/lib/juju/h2", tarfile.LNKTYPE, "var/lib/juju/tools/machine-0/jujud"), None)
    )
    msgs = failed_messages(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))
    assert msgs == [
        "root.tar member 'var/lib/juju/h1' is a hard link to 'var/lib/juju/tools/machine-0', "
        "which is or goes through a symlink",
        "root.tar member 'var/lib/juju/h2' is a hard link to 'var/lib/juju/tools/machine-0/jujud', "
        "which is or goes through a symlink",
    ]


def test_directory_over_a_symlink_fails(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((dir_info("var/lib/juju/tools/machine-0"), None))
    assert "appears twice" in only_failure(archive.verify_archive(spec.write(tmp_path / "a.tar.gz")))


def test_repeated_directory_entries_are_fine(tmp_path: Path) -> None:
    spec = ArchiveSpec()
    spec.root.append((dir_info("var/lib/juju/agents/machine-0"), None))
    assert archive.verify_archive(spec.write(tmp_path / "a.tar.gz")).ok


def test_safe_extract_refuses_a_hard_link_to_an_existing_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "l").symlink_to(secret)
    with pytest.raises(VerifyError, match="points at a symlink on disk"):
        archive.safe_extract(unsafe_tar(special_info("h", tarfile.LNKTYPE, "l")), dest)
    assert not (dest / "h").exists()


def test_safe_extract_keeps_hard_links_inside(tmp_path: Path) -> None:
    tar = unsafe_tar((file_info("a", b"data"), b"data"), special_info("b", tarfile.LNKTYPE, "a"))
    assert archive.safe_extract(tar, tmp_path) == ["a", "b"]
    assert (tmp_path / "b").read_bytes() == b"data"
    assert (tmp_path / "a").stat().st_ino == (tmp_path / "b").stat().st_ino


# --- identity fields of metadata.json reach remote paths: verification refuses bad ones ----------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("ModelUUID", "../../tmp/evil", "metadata ModelUUID '../../tmp/evil' is not a UUID"),
        ("ModelUUID", "x/y", "metadata ModelUUID 'x/y' is not a UUID"),
        ("ControllerUUID", "abc\ndef", "metadata ControllerUUID 'abc\\ndef' is not a UUID"),
        ("ID", "2026.x/y", "metadata ID '2026.x/y' is not of the form YYYYMMDD-hhmmss.<uuid>"),
    ],
)
def test_metadata_with_a_non_uuid_identity_fails_verification(
    tmp_path: Path, key: str, value: str, expected: str
) -> None:
    spec = ArchiveSpec()
    spec.metadata = {**(spec.metadata or {}), key: value}
    report = archive.verify_archive(spec.write(tmp_path / "a.tar.gz"))
    assert only_failure(report) == expected
    with pytest.raises(VerifyError) as caught:
        report.raise_for_failures()
    assert caught.value.exit_code == EXIT_VERIFY and expected in caught.value.message


# --- big dump files are decoded in worker processes: the same full check ----------------------


def _many_docs(n: int) -> list[bytes]:
    return [
        bson.encode({"_id": bson.ObjectId(), "n": i, "x": "y" * 300, "c": {"l": [i, "z"]}}) for i in range(n)
    ]


def _corrupt_nested(doc: bytes) -> bytes:
    """Return `doc` with the nested string "z" given a length running past its document."""
    bad = bytearray(doc)
    i = bad.rindex(b"z\x00")
    bad[i - 4 : i] = (200).to_bytes(4, "little")
    return bytes(bad)


def test_pool_decode_counts_and_rejects_nested_corruption_like_the_local_decode() -> None:
    docs = _many_docs(12_000)  # ~4 MiB: several blocks in flight
    docs[9_000] = _corrupt_nested(docs[9_000])
    good = b"".join(docs[:9_000])
    bad = b"".join(docs)
    pool = archive.bson_pool()
    assert pool is not None, "the unit tests run on a machine with 2 CPUs or more"
    with pool:
        assert archive.check_bson_stream(io.BytesIO(good), pool=pool) == 9_000
        with pytest.raises(ValueError) as in_pool:
            archive.check_bson_stream(io.BytesIO(bad), pool=pool)
    with pytest.raises(ValueError) as local:
        archive.check_bson_stream(io.BytesIO(bad))
    assert str(in_pool.value) == str(local.value)
    assert str(in_pool.value).startswith("document 9001 does not decode")


def test_big_dump_file_verifies_and_nested_corruption_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bson.datetime_ms import DatetimeMS

    monkeypatch.setattr(archive.bsonstream, "BSON_POOL_MIN", 1024)  # decode this small "big" file in the pool
    docs = [*_many_docs(6_000), bson.encode({"d": DatetimeMS(-70_000_000_000_000)})]
    spec = ArchiveSpec()
    spec.dump["logs/logs.bson"] = b"".join(docs)
    report = archive.verify_archive(spec.write(tmp_path / "good.tar.gz"))
    assert report.ok, failed_messages(report)
    docs[5_000] = _corrupt_nested(docs[5_000])
    spec.dump["logs/logs.bson"] = b"".join(docs)
    msg = only_failure(archive.verify_archive(spec.write(tmp_path / "bad.tar.gz")))
    assert msg.startswith("dump/logs/logs.bson is not well-formed BSON: document 5001 does not decode")


@pytest.mark.parametrize("sha1", [True, False])
def test_threaded_hashing_reader_digests_every_byte_on_one_thread_per_digest(sha1: bool) -> None:
    """The archive's SHA-256 and SHA-1 are computed by one thread each (neither waits for the
    other); the digests are those of every byte read, views included, and its threads end."""
    from jujubackup.archive.hashing import _HashingReader

    data = os.urandom(3 << 20) + b"tail"
    before = threading.active_count()
    reader = _HashingReader(io.BytesIO(data), sha1=sha1, threaded=True)
    assert threading.active_count() == before + (2 if sha1 else 1)
    head = reader.read(1000)
    reader.drain()
    digest = reader.digest()
    assert head == data[:1000] and digest.size == len(data)
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.sha1_b64 == (base64.b64encode(hashlib.sha1(data).digest()).decode() if sha1 else "")
    reader.close()
    assert threading.active_count() == before
