"""NCRONTAB schedules for the dev host's timer triggers, and when reconciliation is due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local.host.timers import Schedule, ScheduleError
from shared.initialsync.service import reconcile_due

T = datetime(2026, 1, 1, 10, 5, 30, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 * * * * *", datetime(2026, 1, 1, 10, 6, 0, tzinfo=UTC)),
        ("*/5 * * * * *", datetime(2026, 1, 1, 10, 5, 35, tzinfo=UTC)),
        ("0 30 3 * * 1", datetime(2026, 1, 5, 3, 30, 0, tzinfo=UTC)),  # Mondays (0 is Sunday)
        ("0 0 9-17 * * *", datetime(2026, 1, 1, 11, 0, 0, tzinfo=UTC)),
        ("15,45 * * * * *", datetime(2026, 1, 1, 10, 5, 45, tzinfo=UTC)),
    ],
)
def test_the_next_occurrence(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(T) == expected


@pytest.mark.parametrize("expression", ["* * * * *", "61 * * * * *", "a * * * * *", "*/0 * * * * *"])
def test_bad_schedules_are_refused(expression: str) -> None:
    with pytest.raises((ScheduleError, ValueError)):
        Schedule.parse(expression)


def test_reconciliation_is_off_by_default_and_runs_every_interval() -> None:
    assert not reconcile_due(None, T, 0)
    assert reconcile_due(None, T, 60)
    assert not reconcile_due(T - timedelta(minutes=30), T, 60)
    assert reconcile_due(T - timedelta(minutes=60), T, 60)
