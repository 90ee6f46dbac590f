"""The lag watch: a lag rule (`lag_minutes`) fires on a change still waiting, not only once it is applied late —
with nothing applied (the apply function down, a backlog, throttling without end) there is no outcome to fire on.
Run every minute by a timer (`functions/ops_watch.py`): the oldest queued or deferred change per map with a lag rule
(held changes are left out: a map paused on purpose is not late).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from shared.ops.alerts import AlertRule
from shared.ops.observer import Observer
from shared.ops.waiting import WaitingChanges


async def watch_lag(
    observer: Observer, waiting: WaitingChanges, maps: Iterable[str], rules: Callable[[str], list[AlertRule]]
) -> dict[str, float]:
    """The age (seconds) of each watched map's oldest waiting change, after its lag rules were checked on it."""
    ages: dict[str, float] = {}
    for name in maps:
        if not any(r.lag_minutes is not None for r in rules(name)):
            continue
        oldest = await waiting.oldest(name)
        if oldest is None:
            continue
        ages[name] = max(0.0, time.time() - oldest["occurred_at"].timestamp())
        kind = "deferred" if oldest["deferred"] else "queued"
        await observer.waited(name, ages[name] * 1000, f"{kind}: {oldest['event_id']}")
    return ages
