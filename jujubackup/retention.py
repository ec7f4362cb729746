"""PURE: which backups a retention policy keeps (restic's `forget --keep-*` rules, plus one safety rule).

The rules follow restic's ApplyPolicy (restic v0.19.1, internal/data/snapshot_policy.go; the same
logic as internal/restic/snapshot_policy.go since v0.16.0, with the "oldest" reason of v0.18.0):

- backups are taken newest first; each rule is a bucket with a count: `last` (every backup is its
  own bucket), `hourly` (UTC YYYYMMDDHH), `daily` (YYYYMMDD), `weekly` (ISO year and week: Monday
  to Sunday), `monthly` (YYYYMM), `yearly` (YYYY);
- a backup is kept by a rule when the rule still has count left and the backup's bucket differs
  from the bucket of the last backup that rule kept (so the newest backup of each hour, day, … is
  the one kept), and then the count goes down by one; `unlimited` (-1) never runs out;
- the oldest backup is also kept by every rule that still has count left when it is reached, with
  the reason `oldest <rule>` when its bucket is the one already kept (restic PR #4366, reason
  text from PR #5039): a young history is not thinned before the rules are full;
- the rules are ORed: a backup kept by one rule is kept, with every rule that kept it as reason;
- a policy with no rule keeps everything and is refused (restic: "no policy was specified").

Where jujubackup differs from restic, on purpose:
- buckets are computed in UTC (a backup ID is its UTC start time; restic uses each snapshot's
  own time zone);
- the newest backup that verified is always kept ("newest verified backup"), whatever the rules
  say, so a policy such as `keep-last 1` never leaves only a broken newest backup;
- equal times (IDs have one-second resolution) are ordered by ID, newest-first, so the result is
  deterministic (restic keeps its input order for equal times).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone

from jujubackup.errors import UsageError
from jujubackup.metadata import ID_TIME_FORMAT

UNLIMITED = -1
RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
NEWEST_VERIFIED = "newest verified backup"


@dataclass(frozen=True)
class Policy:
    """How many backups each rule keeps (0: the rule is off; UNLIMITED: every bucket)."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < UNLIMITED:
                raise UsageError(f"keep-{f.name} must be a count >= 0 or 'unlimited', not {value!r}")

    def empty(self) -> bool:
        """Return True when no rule is on (such a policy would keep everything)."""
        return all(getattr(self, rule) == 0 for rule in RULES)

    def describe(self) -> str:
        """Return the policy as text: `keep 3 latest, 7 daily, all monthly` (restic's wording)."""
        parts = [f"{'all' if n == UNLIMITED else n} {'latest' if rule == 'last' else rule}"
                 for rule in RULES if (n := getattr(self, rule))]
        return "keep " + ", ".join(parts) if parts else "no rule"

    def as_dict(self) -> dict[str, int | str]:
        """Return the rules that are on, as `keep-RULE: count|unlimited`."""
        return {f"keep-{rule}": "unlimited" if n == UNLIMITED else n
                for rule in RULES if (n := getattr(self, rule))}


def parse_count(text: str | int, rule: str) -> int:
    """Given a count from the command line or a config file (`7`, `unlimited`), return it as an int
    (UNLIMITED for `unlimited`). Raise UsageError (exit 2) for anything else or a negative count."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif isinstance(text, str) and text.strip().lower() == "unlimited":
        return UNLIMITED
    elif isinstance(text, str) and text.strip().isdigit():
        value = int(text.strip())
    else:
        raise UsageError(f"--keep-{rule} {text!r} is not a count", hint="give a count >= 0 or 'unlimited'")
    if value < 0:
        raise UsageError(f"--keep-{rule} {value} is negative", hint="give a count >= 0 or 'unlimited'")
    return value


@dataclass(frozen=True)
class Candidate:
    """One backup the policy looks at: its ID, its UTC time and whether it verified (None: not known)."""

    id: str
    time: datetime
    verified: bool | None = None


def id_time(backup_id: str) -> datetime:
    """Given a backup ID (`YYYYMMDD-hhmmss.<uuid>`, validated by the catalog), return its UTC time.
    Raise ValueError when it does not start with a real date and time."""
    return datetime.strptime(backup_id[:15], ID_TIME_FORMAT).replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one backup, and why it is kept (empty reasons: it goes)."""

    candidate: Candidate
    reasons: tuple[str, ...]

    @property
    def keep(self) -> bool:
        return bool(self.reasons)


@dataclass(frozen=True)
class Plan:
    """The policy applied to a set of backups: one decision per backup, newest first."""

    policy: Policy
    decisions: list[Decision] = field(default_factory=list)

    @property
    def keep(self) -> list[Candidate]:
        return [d.candidate for d in self.decisions if d.keep]

    @property
    def remove(self) -> list[Candidate]:
        return [d.candidate for d in self.decisions if not d.keep]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_BUCKETS: dict[str, Callable[[datetime, int], object]] = {
    "last": lambda t, nr: nr,
    "hourly": lambda t, nr: (t.year, t.month, t.day, t.hour),
    "daily": lambda t, nr: (t.year, t.month, t.day),
    "weekly": lambda t, nr: tuple(t.isocalendar())[:2],
    "monthly": lambda t, nr: (t.year, t.month),
    "yearly": lambda t, nr: t.year,
}
_REASON = {rule: f"{rule} backup" for rule in RULES}


def apply_policy(backups: Sequence[Candidate], policy: Policy) -> Plan:
    """Given backups (any order) and a policy, return the Plan: for each backup, newest first, the
    reasons it is kept (the rules of the module docstring; the newest backup with verified=True is
    kept as NEWEST_VERIFIED), or no reason when it goes.

    Raise UsageError (exit 2) for an empty policy (it would keep everything: restic refuses it too).
    """
    if policy.empty():
        raise UsageError("no retention rule given: nothing would be removed",
                         hint="give at least one of --keep-last/-hourly/-daily/-weekly/-monthly/-yearly")
    ordered = sorted(backups, key=lambda c: (_utc(c.time), c.id), reverse=True)
    counts = {rule: getattr(policy, rule) for rule in RULES}
    last_bucket: dict[str, object] = {}
    oldest = len(ordered) - 1
    reasons: list[list[str]] = []
    for nr, backup in enumerate(ordered):
        when = _utc(backup.time)
        kept: list[str] = []
        for rule in RULES:
            if counts[rule] == 0:
                continue
            bucket = _BUCKETS[rule](when, nr)
            same = rule in last_bucket and last_bucket[rule] == bucket
            if not same or nr == oldest:
                kept.append(f"oldest {_REASON[rule]}" if same else _REASON[rule])
                last_bucket[rule] = bucket
                if counts[rule] > 0:
                    counts[rule] -= 1
        reasons.append(kept)
    newest_verified = next((i for i, c in enumerate(ordered) if c.verified), None)
    if newest_verified is not None:
        reasons[newest_verified].append(NEWEST_VERIFIED)
    return Plan(policy, [Decision(c, tuple(r)) for c, r in zip(ordered, reasons, strict=True)])
