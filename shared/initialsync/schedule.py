"""Reconciliation's schedule from its two app settings, pure: `RECONCILE_INTERVAL_MINUTES` (0 or unset: off) and
`RECONCILE_MAPS` (comma-separated; unset: every enabled map). A setting that is wrong is reported and, where it can,
worked around: a name that is no map leaves the others reconciled (a typo stopped reconciliation of every map, the
timer failing each minute), a number that is not a finite one, or negative, turns it off."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Schedule:
    every_minutes: float  # 0: off
    maps: list[str] | None  # None: every enabled map
    problems: list[str] = field(default_factory=list)


def reconcile_schedule(interval: str | None, maps: str | None, known: Collection[str]) -> Schedule:
    problems: list[str] = []
    try:
        every = float(interval or 0)
    except ValueError:
        every = math.nan
    if not math.isfinite(every) or every < 0:
        problems.append(
            f"RECONCILE_INTERVAL_MINUTES={interval!r} is not a number of minutes ≥ 0: reconciliation is off"
        )
        every = 0.0
    names = [m.strip() for m in (maps or "").split(",") if m.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        problems.append(
            f"RECONCILE_MAPS names no map {', '.join(unknown)} (the maps: {', '.join(sorted(known))})"
            + ("; the others are reconciled" if len(unknown) < len(names) else ": reconciliation is off")
        )
        names = [n for n in names if n in known]
        if not names:
            every = 0.0
    return Schedule(every, names or None, problems)
