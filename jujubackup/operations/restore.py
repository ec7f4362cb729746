"""restore: connect → probe → plan → show → confirm → execute → verify (DESIGN.md §5, issue 5).

Three forms: `restore ID` (back onto the controller the backup is stored on), `restore ID --target
HOST` and `restore --archive FILE --target HOST` (disaster recovery onto a fresh machine). Plus
`--resume` and `--rollback` of a restore journaled on a target.

The stages live in restore/ (gather, target, overlay, plan, show, execute; fresh.py runs them in
order, journaled.py resumes or rolls back). Old controllers named in the backup are probed FROM THE
TARGET (restore-preflight), never from here.
"""

from __future__ import annotations

from jujubackup.errors import UsageError
from jujubackup.flagcheck import exclusive, one_source
from jujubackup.host.base import Connector
from jujubackup.operations.connecting import check_backup_dir
from jujubackup.operations.repoint import check_options
from jujubackup.restore.fresh import fresh_restore, work_dir
from jujubackup.restore.journaled import resume, rollback
from jujubackup.restore.request import Confirm, RestoreRequest, RestoreResult
from jujubackup.ui import UI


def restore(connector: Connector, request: RestoreRequest, ui: UI, confirm: Confirm) -> RestoreResult:
    """Run the restore the request asks for; return what happened.

    Raise UsageError for a bad combination of arguments, VerifyError (exit 8) for an archive that does
    not verify, RefusedError (exit 6) for a failed precondition, RemoteStepError (exit 4) for a failed
    step (services the restore stopped are started again first).
    """
    check_request(request)
    if request.rollback:
        return rollback(connector, request, ui)
    if request.resume:
        return resume(connector, request, ui)
    with work_dir(request.work_dir) as work:
        return fresh_restore(connector, request, ui, confirm, work)


def check_request(request: RestoreRequest) -> None:
    """Raise UsageError unless the request names exactly what one form of restore needs."""
    exclusive(resume=request.resume, rollback=request.rollback)
    if request.repoint is not None:
        check_options(request.repoint)
    if request.resume or request.rollback:
        return
    one_source(request.backup_ref, request.archive,
               hint="`restore ID`, `restore ID --target HOST` or `restore --archive FILE --target HOST`")
    if request.archive and not request.target:
        raise UsageError("--archive needs --target HOST (the machine to restore onto)")
    check_backup_dir(request.backup_dir)
