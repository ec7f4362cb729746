"""retention.apply_policy, table-driven over dates (issue 17: "40 backups over 90 days").

The expected sets were worked out by hand from the dates below (restic's rules: newest first, one
backup per bucket while the rule has count left, the oldest backup while a rule still has count).
The same implementation was also checked against the 21 count-only golden files of restic v0.19.1
(internal/data/testdata/policy_keep_snapshots_*): all matched, times and reasons.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jujubackup.errors import UsageError
from jujubackup.retention import (
    NEWEST_VERIFIED,
    UNLIMITED,
    Candidate,
    Policy,
    apply_policy,
    id_time,
    parse_count,
)

UUID = "3e9b2a44-0000-4000-8000-00000000abcd"
START = datetime(2026, 9, 1, 2, 0, tzinfo=timezone.utc)  # a Tuesday, ISO week 36


def history() -> list[Candidate]:
    """40 backups over 90 days (2026-09-01 .. 2026-11-29), each on its own day, at 02:00, 09:00 or
    16:00 UTC: backup i is on day floor(i*89/39). Index -> date (ISO week):
    0 09-01 (36)  1 09-03 (36)  2 09-05 (36)  3 09-07 (37)  4 09-10 (37)  5 09-12 (37)
    6 09-14 (38)  7 09-16 (38)  8 09-19 (38)  9 09-21 (39) 10 09-23 (39) 11 09-26 (39)
    12 09-28 (40) 13 09-30 (40) 14 10-02 (40) 15 10-05 (41) 16 10-07 (41) 17 10-09 (41)
    18 10-12 (42) 19 10-14 (42) 20 10-16 (42) 21 10-18 (42) 22 10-21 (43) 23 10-23 (43)
    24 10-25 (43) 25 10-28 (44) 26 10-30 (44) 27 11-01 (44) 28 11-03 (45) 29 11-06 (45)
    30 11-08 (45) 31 11-10 (46) 32 11-13 (46) 33 11-15 (46) 34 11-17 (47) 35 11-19 (47)
    36 11-22 (47) 37 11-24 (48) 38 11-26 (48) 39 11-29 (48)
    """
    out = []
    for i in range(40):
        when = START + timedelta(days=(i * 89) // 39, hours=(i % 3) * 7)
        out.append(Candidate(f"{when:%Y%m%d-%H%M%S}.{UUID}", when))
    return out


def kept_indexes(policy: Policy, backups: list[Candidate]) -> set[int]:
    index = {c.id: i for i, c in enumerate(backups)}
    return {index[c.id] for c in apply_policy(backups, policy).keep}


CASES = [
    # (policy, kept indexes, why)
    (Policy(daily=7, weekly=4, monthly=3), {39, 38, 37, 36, 35, 34, 33, 30, 26, 13},
     "7 days; weeks 48, 47, 46, 45 (newest of each: 39, 36, 33, 30); months Nov 39, Oct 26, Sep 13"),
    (Policy(last=5), {39, 38, 37, 36, 35}, "the five newest"),
    (Policy(hourly=5), {39, 38, 37, 36, 35}, "each backup is its own hour"),
    (Policy(weekly=2), {39, 36}, "weeks 48 and 47"),
    (Policy(monthly=6), {39, 26, 13, 0},
     "3 months exist: Nov 39, Oct 26, Sep 13, then the oldest (0) with count left"),
    (Policy(yearly=1), {39}, "one year, count spent before the oldest"),
    (Policy(yearly=2), {39, 0}, "2026 is one year: 39, and the oldest with count left"),
    (Policy(daily=3, weekly=2, monthly=UNLIMITED), {39, 38, 37, 36, 26, 13, 0},
     "unlimited months never run out: the oldest is kept too"),
    (Policy(last=2, weekly=3), {39, 38, 36, 33}, "last 39, 38; weeks 48 (39), 47 (36), 46 (33)"),
    (Policy(last=40), set(range(40)), "all of them"),
    (Policy(last=UNLIMITED), set(range(40)), "all of them"),
]


@pytest.mark.parametrize(("policy", "kept", "why"), CASES, ids=[c[2][:40] for c in CASES])
def test_forty_backups_over_ninety_days(policy: Policy, kept: set[int], why: str) -> None:
    backups = history()
    assert kept_indexes(policy, backups) == kept, why
    plan = apply_policy(backups, policy)
    assert len(plan.keep) + len(plan.remove) == 40
    assert [d.candidate.id for d in plan.decisions] == sorted((c.id for c in backups), reverse=True)


def test_reasons_name_every_rule_that_keeps_a_backup() -> None:
    backups = history()
    plan = apply_policy(backups, Policy(daily=7, weekly=4, monthly=6))
    reasons = {d.candidate.id: d.reasons for d in plan.decisions}
    assert reasons[backups[39].id] == ("daily backup", "weekly backup", "monthly backup")
    assert reasons[backups[33].id] == ("daily backup", "weekly backup")
    assert reasons[backups[26].id] == ("monthly backup",)
    assert reasons[backups[0].id] == ("oldest monthly backup",)  # September's bucket is 13's
    assert reasons[backups[1].id] == ()


def test_the_newest_backup_that_verified_is_always_kept() -> None:
    backups = history()
    broken = {backups[39].id, backups[38].id}
    marked = [Candidate(c.id, c.time, False if c.id in broken else (True if c is backups[37] else None))
              for c in backups]
    plan = apply_policy(marked, Policy(last=1))
    assert [c.id for c in plan.keep] == [backups[39].id, backups[37].id]
    by_id = {d.candidate.id: d for d in plan.decisions}
    assert by_id[backups[37].id].reasons == (NEWEST_VERIFIED,)
    assert not by_id[backups[38].id].keep
    # already kept by the rules: the reason is added, nothing else changes
    kept = apply_policy(marked, Policy(last=3))
    assert [c.id for c in kept.keep] == [backups[39].id, backups[38].id, backups[37].id]
    reasons = {d.candidate.id: d.reasons for d in kept.decisions}
    assert reasons[backups[37].id] == ("last backup", NEWEST_VERIFIED)


def test_iso_weeks_span_the_new_year_and_equal_times_are_ordered_by_id() -> None:
    def at(text: str, suffix: str = "a") -> Candidate:
        when = datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
        return Candidate(f"{when:%Y%m%d-%H%M%S}.{suffix}", when)

    # 2026-12-28 (Mon) and 2027-01-01 (Fri) are both in ISO week 2026-W53; 2027-01-04 is 2027-W01
    dec28, jan1, jan4 = at("2026-12-28 02:00"), at("2027-01-01 02:00"), at("2027-01-04 02:00")
    assert {c.id for c in apply_policy([dec28, jan1, jan4], Policy(weekly=2)).keep} == {jan1.id, jan4.id}
    # same second on two controllers' IDs: the larger ID counts as newer
    first, second = at("2026-10-01 02:00", "a"), at("2026-10-01 02:00", "b")
    assert [c.id for c in apply_policy([first, second], Policy(daily=1)).keep] == [second.id]


def test_times_in_other_zones_are_bucketed_in_utc() -> None:
    late = datetime(2026, 10, 1, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 2026-10-02 01:30 UTC
    early = datetime(2026, 10, 2, 0, 10, tzinfo=timezone.utc)
    plan = apply_policy([Candidate("a", late), Candidate("b", early)], Policy(daily=1))
    assert [c.id for c in plan.keep] == ["a"]  # one UTC day; `a` is the newer


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(UsageError, match="no retention rule"):
        apply_policy(history(), Policy())


@pytest.mark.parametrize(("text", "value"), [("7", 7), (3, 3), ("unlimited", UNLIMITED), (" 0 ", 0)])
def test_parse_count(text: str | int, value: int) -> None:
    assert parse_count(text, "daily") == value


@pytest.mark.parametrize("text", ["-1", "x", "1.5", "", True, -2])
def test_parse_count_refuses(text: object) -> None:
    with pytest.raises(UsageError) as caught:
        parse_count(text, "daily")  # type: ignore[arg-type]
    assert caught.value.exit_code == 2


def test_policy_refuses_bad_counts_and_describes_itself() -> None:
    with pytest.raises(UsageError):
        Policy(daily=-5)
    assert Policy(daily=7, monthly=UNLIMITED).describe() == "keep 7 daily, all monthly"
    assert Policy(daily=7, monthly=UNLIMITED).as_dict() == {"keep-daily": 7, "keep-monthly": "unlimited"}


def test_id_time_is_the_ids_utc_time() -> None:
    assert id_time(f"20261129-020000.{UUID}") == datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)
