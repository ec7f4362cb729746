"""The connect step every verb shares: connect to a (healthy) controller and probe it, and the
workstation-side check of --backup-dir. `connect_controller` picks the first of several hosts that
answers and is a healthy controller (the HA case); catalogs.py connects for the catalog verbs.
"""

from __future__ import annotations

import posixpath

from jujubackup import facts as facts_mod
from jujubackup import profiles, scripts
from jujubackup.catalog import describe_holder
from jujubackup.connect import connect_first
from jujubackup.errors import LockedError, RefusedError, UsageError
from jujubackup.facts import ControllerFacts
from jujubackup.host.base import Connector, Host
from jujubackup.ui import UI


def probe(host: Host, backup_dir: str = profiles.DEFAULT_BACKUP_DIR) -> ControllerFacts:
    """Given a connected host, run the read-only probe and return its ControllerFacts.

    Raise RefusedError (exit 6) for an upstart/1.x controller or a host with no known Juju layout,
    RemoteStepError (exit 4) if the probe script fails.
    """
    text = scripts.render(
        "probe",
        backup_dir=backup_dir,
        restore_journal_dir=profiles.RESTORE_JOURNAL_DIR,
        paths=profiles.probe_paths(),
        profiles=profiles.PROFILES,
        estimate_dbs=facts_mod.ESTIMATE_DBS,
        max_models=facts_mod.MAX_MODELS,
    )
    doc = host.run("probe", text, timeout=180).json()
    return facts_mod.parse_probe(doc, host.name)


def connect_controller(
    via: Connector,
    ui: UI,
    backup_dir: str = profiles.DEFAULT_BACKUP_DIR,
    *,
    require_healthy: bool = True,
    refuse_unfinished_restore: bool = False,
    refuse_locked: bool = False,
) -> tuple[Host, ControllerFacts]:
    """Connect to the first of the connector's hosts that answers and is a (healthy) controller.

    Return the host and its facts. Raise UsageError (exit 2) for a relative backup dir (before
    connecting), ConnectError (exit 3) when none qualifies (each reason listed), or the single host's
    own error (e.g. RefusedError for a 1.x controller; with `refuse_unfinished_restore`, for a host
    whose restore journal says a restore is unfinished; with `refuse_locked`, LockedError (exit 7)
    when another operation holds the controller's lock - checked before health, as a running
    `create --mode stop` has juju-db stopped).
    """
    check_backup_dir(backup_dir)
    found: dict[str, ControllerFacts] = {}

    def accept(host: Host) -> bool:
        facts = probe(host, backup_dir)
        if refuse_unfinished_restore and facts.restore_journal:
            raise RefusedError(
                f"unfinished restore on {host.name}: run restore --resume or --rollback first",
                hint=facts.unfinished_restore(),
            )
        if refuse_locked:
            refuse_if_locked(facts, host.name)
        if require_healthy:
            reasons = facts.unhealthy_reasons(profiles.profile_named(facts.profile))
            if reasons:
                raise RefusedError(
                    f"{host.name} is not a healthy controller: {'; '.join(reasons)}",
                    hint="start juju-db, or give another controller with -H (repeat -H for HA)",
                )
        found["facts"] = facts
        return True

    host = connect_first(via, ui, accept=accept)
    return host, found["facts"]


def refuse_if_locked(facts: ControllerFacts, name: str) -> None:
    """Given a host's facts, return if no jujubackup operation holds its controller's lock. Raise
    LockedError (exit 7) naming the holder otherwise."""
    if facts.lock_holder is None:
        return
    who = describe_holder(facts.lock_holder) if facts.lock_holder else "no holder record"
    raise LockedError(
        f"the controller's backup dir on {name} is locked: {who}",
        hint="wait for that operation to finish; the lock (flock) frees itself when its holder exits",
    )


def check_backup_dir(backup_dir: str) -> None:
    """Given a --backup-dir, return if it can be a dedicated backup dir as far as the workstation can
    tell. Raise UsageError (exit 2) for a relative path, a control character, or a path that is (after
    normalising `.`, `..` and repeated slashes) a system dir or lies under a pseudo filesystem: the
    lock chmods the dir 0700 and create/upload delete staging names in it. The host checks the rest
    (its realpath, and that an existing dir holds only what jujubackup made: exit 6).
    """
    hint = f"give --backup-dir as a dedicated /path/on/the/controller (default {profiles.DEFAULT_BACKUP_DIR})"
    if not backup_dir.startswith("/"):
        raise UsageError(f"backup dir must be an absolute path: {backup_dir!r}", hint=hint)
    if any(ord(c) < 32 or ord(c) == 127 for c in backup_dir):
        raise UsageError(f"backup dir holds a control character: {backup_dir!r}", hint=hint)
    normal = "/" + posixpath.normpath(backup_dir).lstrip("/")
    under = [d for d in profiles.PSEUDO_FS_DIRS if normal.startswith(d + "/")]
    if normal in profiles.SYSTEM_DIRS or under:
        raise UsageError(
            f"backup dir {backup_dir} is a system dir" + (f" (under {under[0]})" if under else ""),
            hint=hint + "; jujubackup chmods it 0700 and removes its staging files there",
        )
