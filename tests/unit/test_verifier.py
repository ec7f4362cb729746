"""BackgroundVerify: verify_archive in a child process, its errors raised here, stopped on leave."""

from __future__ import annotations

import time
from pathlib import Path

import bson
import pytest

from jujubackup.archive import BSON_POOL_MIN
from jujubackup.errors import NotFoundError
from jujubackup.verifier import BackgroundVerify, died
from tests.paths import FIXTURES_28
from tests.unit.archive_builders import ArchiveSpec

VALID = FIXTURES_28 / "valid-backup.tar.gz"
MISSING_ROOT = FIXTURES_28 / "missing-root-backup.tar.gz"


def test_reports_of_good_and_bad_archives_come_back() -> None:
    with BackgroundVerify(VALID) as good, BackgroundVerify(MISSING_ROOT) as bad:
        assert good.result().ok
        assert good.done()
        report = bad.result()
    assert not report.ok
    assert any("root.tar" in c.message for c in report.failures)


def test_a_big_dump_is_decoded_in_the_child(tmp_path: Path) -> None:
    """A dump file over BSON_POOL_MIN (where verify_archive alone would start worker processes)."""
    doc = bson.encode({"_id": 1, "data": bson.Binary(b"\x07" * (1 << 20))})
    spec = ArchiveSpec()
    spec.dump = {**spec.dump, "blobstore/blobstore.chunks.bson": doc * (BSON_POOL_MIN // len(doc) + 2)}
    path = spec.write(tmp_path / "big-dump.tar.gz")
    with BackgroundVerify(path) as verifying:
        report = verifying.result()
    assert report.ok, report.failures
    assert "dump/blobstore/blobstore.chunks.bson" in report.dump_files


def test_an_error_in_the_child_is_raised_in_the_parent(tmp_path: Path) -> None:
    with BackgroundVerify(tmp_path / "absent.tar.gz") as verifying, pytest.raises(NotFoundError) as err:
        verifying.result()
    assert "absent.tar.gz" in err.value.message


def test_leaving_early_stops_the_child(tmp_path: Path) -> None:
    sparse = tmp_path / "huge.tar.gz"
    with sparse.open("wb") as fh:
        fh.truncate(32 << 30)  # 32 GiB of zeros: not gzip, yet the digests read every byte
    verifying = BackgroundVerify(sparse)
    time.sleep(0.5)
    assert not verifying.done()
    verifying.close()
    assert not verifying._proc.is_alive()


def test_a_module_in_the_current_directory_does_not_shadow_the_childs_stdlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `struct.py` in the cwd made every child die at start ("exit code 0", issue 15)."""
    (tmp_path / "struct.py").write_text("raise SystemExit(0)\n")
    (tmp_path / "archive.tar.gz").write_bytes((FIXTURES_28 / "valid-backup.tar.gz").read_bytes())
    monkeypatch.chdir(tmp_path)
    with BackgroundVerify("archive.tar.gz") as verifying:  # relative: the child gets it absolute
        assert verifying.result().ok


@pytest.mark.parametrize(("code", "says"), [
    (-9, "was killed by SIGKILL"), (0, "exited (code 0) without a result"), (3, "exited with code 3"),
])
def test_a_child_that_dies_says_how_and_why(code: int, says: str) -> None:
    err = died(code)
    assert err.exit_code == 1 and says in err.message and err.hint
    assert ("out-of-memory" in err.hint) == (code == -9) and ("shadow" in err.hint) == (code == 0)
