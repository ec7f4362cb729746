"""The checks the verbs' requests share (restore, drill, repoint): one message each, so that every
verb words a bad combination of flags the same way. PURE: each raises UsageError (exit 2) or returns.
"""

from __future__ import annotations

from pathlib import Path

from jujubackup.errors import UsageError


def exclusive(**flags: bool) -> None:
    """Given flags by name (`dry_run=True`), raise UsageError when more than one is set:
    "--resume and --rollback exclude each other"."""
    given = [f"--{name.replace('_', '-')}" for name, value in flags.items() if value]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other")


def one_source(backup_ref: str | None, archive: Path | None, hint: str) -> None:
    """Raise UsageError (with `hint`: the verb's forms) unless exactly one of a backup ID and
    --archive FILE is given."""
    if bool(backup_ref) == bool(archive):
        raise UsageError("give a backup ID or --archive FILE (not both)", hint=hint)


def in_range(flag: str, value: float, low: float, high: float, hint: str) -> None:
    """Raise UsageError "--wait 0 is out of range" (with `hint`) unless low <= value <= high."""
    if not low <= value <= high:
        raise UsageError(f"{flag} {value:g} is out of range", hint=hint)
