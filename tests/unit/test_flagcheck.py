"""The request checks restore, drill and repoint share (flagcheck): each verb words a bad flag
combination the same way, and restore checks its repoint stage's --parallel/--wait as repoint does."""

from __future__ import annotations

from pathlib import Path

import pytest

from jujubackup.errors import EXIT_USAGE, UsageError
from jujubackup.operations import drill, repoint, restore
from jujubackup.operations.repoint import RepointRequest
from jujubackup.restore.request import RestoreRequest


def usage(check: object, request: object) -> str:
    with pytest.raises(UsageError) as caught:
        check(request)  # type: ignore[operator]
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value.message


def test_exclusive_flags_are_worded_alike() -> None:
    assert usage(restore.check_request, RestoreRequest(resume=True, rollback=True)) == \
        "--resume and --rollback exclude each other"
    assert usage(repoint.check_request, RepointRequest(target="h", resume=True, dry_run=True)) == \
        "--resume and --dry-run exclude each other"


def test_a_backup_id_or_an_archive_not_both_not_neither(tmp_path: Path) -> None:
    both = {"backup_ref": "latest", "archive": tmp_path / "a.tar.gz"}
    for check, request in ((restore.check_request, RestoreRequest(**both)),
                           (restore.check_request, RestoreRequest()),
                           (drill.check_request, drill.DrillRequest(target="h", **both)),
                           (drill.check_request, drill.DrillRequest(target="h"))):
        assert usage(check, request) == "give a backup ID or --archive FILE (not both)"


@pytest.mark.parametrize("options", [{"parallel": 0}, {"parallel": 65}, {"wait": 0}, {"wait": 3601}])
def test_restore_checks_its_repoint_stage_as_repoint_does(options: dict[str, float]) -> None:
    own = usage(repoint.check_request, RepointRequest(target="h", **options))  # type: ignore[arg-type]
    staged = RestoreRequest(backup_ref="latest", repoint=RepointRequest(**options))  # type: ignore[arg-type]
    assert usage(restore.check_request, staged) == own and "out of range" in own
    restore.check_request(RestoreRequest(backup_ref="latest", repoint=None))  # --no-repoint: nothing to check
