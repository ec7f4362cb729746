"""upload of a never-verified archive: the stream starts at once and the verification (another
process, verifier.BackgroundVerify) runs beside it; only both passing registers it. Here the
verification is scripted so that it fails while the FakeHost still reads the file (the stream stops
there) or only after the stream ended: either way exit 8 with one error line, the staged file removed
and nothing registered."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from jujubackup.archive import VerifyReport, verify_archive
from jujubackup.errors import EXIT_VERIFY
from jujubackup.operations import upload
from tests.fakehost import CHUNK, LOCAL, FakeConnector
from tests.paths import VALID_28
from tests.unit.test_verbs_on_fake import VALID_ID, controller, run

MIB = 1 << 20
BROKEN = "gzip stream is corrupt (invalid block type) at byte 4194304"


class ScriptedVerify:
    """Stands in for BackgroundVerify: not done() for the first `busy` asks, then done with `report`."""

    def __init__(self, report: VerifyReport, busy: int) -> None:
        self.report = report
        self.busy = busy
        self.asked = 0
        self.closed = False

    def done(self) -> bool:
        self.asked += 1
        return self.asked > self.busy

    def result(self) -> VerifyReport:
        return self.report

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> ScriptedVerify:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def failed() -> VerifyReport:
    report = VerifyReport("damaged.tar.gz")
    report.add("readable", False, BROKEN)
    return report


def upload_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, busy: int
) -> tuple[Any, ScriptedVerify, Path]:
    """Upload a 6 MiB file whose verification fails after `busy` checks; assert exit 8 with the one
    error line, and return (the host, the verification, the host's backup dir)."""
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(os.urandom(6 * MIB))
    verifying = ScriptedVerify(failed(), busy=busy)
    host = controller("ctl0", tmp_path / "host").expect("transfer-remove", LOCAL)
    monkeypatch.setattr(upload, "start_verification", lambda _path: verifying)
    backups = tmp_path / "host" / "backups"
    code, _, err = run(FakeConnector({"ctl0": host}), capsys, "upload", str(damaged),
                       "--backup-dir", str(backups))
    assert code == EXIT_VERIFY
    assert errors(err) == [f"error: archive damaged.tar.gz did not verify: {BROKEN}"]
    return host, verifying, backups


def test_a_verification_failing_while_the_file_streams_stops_the_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, verifying, backups = upload_damaged(tmp_path, capsys, monkeypatch, busy=2)  # fails at the 3rd check
    assert host.direct_puts == 1 and host.put_sent == [3 * CHUNK]  # stopped, not sent to the end
    assert verifying.closed
    assert not [p.name for p in backups.iterdir() if p.name.startswith(".upload-")]
    listed = run(FakeConnector({"ctl0": host}), capsys, "list", "--format", "json",
                 "--backup-dir", str(backups))
    assert listed[0] == 0 and json.loads(listed[1]) == []


def test_a_verification_failing_after_the_stream_ended_registers_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, _verifying, backups = upload_damaged(tmp_path, capsys, monkeypatch, busy=10**6)  # busy to the end
    assert host.put_sent == [6 * MIB]  # the whole file reached the host, and was removed again
    assert not [p.name for p in backups.iterdir() if p.name.startswith(".upload-")]
    assert not list(backups.glob("*.tar.gz")) and not list(backups.glob("*.json"))


def test_a_verification_passing_after_the_stream_ended_registers_the_archive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifying = ScriptedVerify(verify_archive(VALID_28), busy=10**6)
    host = controller("ctl0", tmp_path / "host").expect("transfer-remove", LOCAL)
    monkeypatch.setattr(upload, "start_verification", lambda _path: verifying)
    backups = tmp_path / "host" / "backups"
    code, out, err = run(FakeConnector({"ctl0": host}), capsys, "upload", str(VALID_28),
                         "--backup-dir", str(backups))
    assert (code, out.strip()) == (0, VALID_ID), err
    assert host.direct_puts == 1
    assert (backups / f"{VALID_ID}.json").is_file()
    assert not [p.name for p in backups.iterdir() if p.name.startswith(".upload-")]
