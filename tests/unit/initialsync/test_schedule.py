"""Reconciliation's schedule settings: a typo in one map name no longer stops every map's reconciliation (the timer
raised each minute), and a number that is not a finite count of minutes turns it off with a reason (go-live review:
`nan` and `inf` started one run, then failed every minute)."""

from __future__ import annotations

import pytest

from shared.initialsync.schedule import reconcile_schedule

KNOWN = {"customers", "vendors", "companies"}


def test_unset_is_off_and_every_map() -> None:
    s = reconcile_schedule(None, None, KNOWN)
    assert (s.every_minutes, s.maps, s.problems) == (0.0, None, [])


def test_a_name_that_is_no_map_is_reported_and_the_others_reconciled() -> None:
    s = reconcile_schedule("60", "customers, custmers", KNOWN)
    assert (s.every_minutes, s.maps) == (60.0, ["customers"])
    assert len(s.problems) == 1 and "custmers" in s.problems[0] and "the others are reconciled" in s.problems[0]
    off = reconcile_schedule("60", "custmers", KNOWN)
    assert off.every_minutes == 0 and "reconciliation is off" in off.problems[0]


@pytest.mark.parametrize("interval", ["nan", "inf", "-5", "soon", "1e400"])
def test_an_interval_that_is_no_finite_count_of_minutes_turns_it_off(interval: str) -> None:
    s = reconcile_schedule(interval, None, KNOWN)
    assert s.every_minutes == 0 and "RECONCILE_INTERVAL_MINUTES" in s.problems[0]
