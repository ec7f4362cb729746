"""PURE: the exit codes of the remote scripts, defined once.

The Python side compares a failed step's exit status with these names; every template gets them as
`rc` (scripts.environment: `exit {{ rc.LOCKED }}`), so a script and its caller cannot drift apart. A
test fails on a literal `exit N` / `return N` (N > 1; 128+signal excepted) in a template. Codes 75-82
stay clear of bash's own (1, 2, 126-165) and of what the wrapped tools exit with; 2 is bash's own
"misuse" for a value the client never sends; 3-5 are the restore/repoint steps' own failures. A code
is only ever read together with the script that exited with it, so two scripts may share a number
for different causes (5: a restore that did not verify, a repoint target that is no controller).
"""

from __future__ import annotations

from typing import Final

RC_USAGE: Final = 2  # catalog-register/-remove: not a backup ID (the client never sends one)
RC_BAD_INPUT: Final = 3  # restore steps: the archive, staged files or snapshot are not what they must be
RC_DB_FAILED: Final = 4  # fresh-db/load-db, repoint-list: juju-db or its shell did not do what was asked
RC_NOT_VERIFIED: Final = 5  # restore-verify: the restored controller did not verify
RC_NOT_A_CONTROLLER: Final = 5  # repoint-list/-machine: no controller machine agent (or no agent) here
RC_LOCKED: Final = 75  # the controller's lock is held (`jujubackup-locked: <holder json>` on stderr)
RC_EXISTS: Final = 76  # a backup with that ID is already in the catalog
RC_MISMATCH: Final = 77  # catalog-register: the staged file's size/SHA-256 differ from the record's
RC_NOSPACE: Final = 78  # create: the backup or scratch dir is full
RC_CLIENT_GONE: Final = 79  # create: the client stopped polling before the commit
RC_NOT_JUJU: Final = 80  # upload-prepare: the host has no machine agent.conf
RC_FOREIGN_DIR: Final = 81  # lock.claim_backup_dir: not a dedicated backup dir
RC_NO_ROOM: Final = 82  # upload-prepare: the archive does not fit (`jujubackup-space: NEED HAVE` on stderr)


def template_codes() -> dict[str, int]:
    """Return the codes for the templates: {"LOCKED": 75, ...} (the RC_ names without the prefix)."""
    return {name.removeprefix("RC_"): value for name, value in globals().items()
            if name.startswith("RC_") and isinstance(value, int)}
