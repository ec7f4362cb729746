"""operations/upload.py: the staging name of an upload, known before the archive is verified."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jujubackup.metadata import make_backup_id, parse_metadata_json
from jujubackup.operations import upload
from tests.unit.archive_builders import V1_METADATA, ArchiveSpec, file_info


def _juju_id() -> str:
    md = parse_metadata_json(json.dumps(V1_METADATA).encode())
    assert md.started is not None
    return make_backup_id(md.started, md.model_uuid)


def test_metadata_early_in_the_archive_names_the_staging_file(tmp_path: Path) -> None:
    path = ArchiveSpec().write(tmp_path / "a.tar.gz")
    assert upload.staging_id(path) == _juju_id()


def test_metadata_after_a_big_member_is_not_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = os.urandom(256 << 10)  # incompressible: the metadata starts past a 64 KiB peek
    md = json.dumps(V1_METADATA).encode()
    members = [(file_info("juju-backup/big", big), big), (file_info("juju-backup/metadata.json", md), md)]
    path = ArchiveSpec(metadata=None, extra=members).write(tmp_path / "a.tar.gz")
    assert upload.staging_id(path) == _juju_id()  # within the default 16 MiB
    monkeypatch.setattr(upload, "PEEK_BYTES", 64 << 10)
    assert upload.staging_id(path) == ""


def test_a_truncated_or_foreign_file_has_no_staging_id(tmp_path: Path) -> None:
    data = ArchiveSpec().write(tmp_path / "a.tar.gz").read_bytes()
    (tmp_path / "a.tar.gz").write_bytes(data[:20])
    (tmp_path / "b.tar.gz").write_bytes(b"PK\x03\x04 not an archive")
    assert upload.staging_id(tmp_path / "a.tar.gz") == ""
    assert upload.staging_id(tmp_path / "b.tar.gz") == ""
