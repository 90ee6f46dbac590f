"""Every map's figures for the console (`GET /api/status`): the pure aggregation of the 10-second buckets, and the
gathering of state, held changes, open errors and conflicts and the last alert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.initialsync import liveness
from shared.initialsync.model import RunState
from shared.ledger.tables import Ledger
from shared.maps.loader import MapSet
from shared.ops.store import OpsStore
from shared.ops.waiting import WaitingChanges

MINUTES = 60


def figures(buckets: Iterable[Mapping[str, Any]], now: float) -> dict[str, Any]:
    """Applied in the last minute and hour, the latest change-to-target latency, and per minute of the last hour
    (oldest first) applied, errors and conflicts."""
    start = (int(now) // 60 - (MINUTES - 1)) * 60
    chart = [{"minute": start + 60 * i, "applied": 0, "errors": 0, "conflicts": 0} for i in range(MINUTES)]
    last_minute = last_hour = 0
    latest: tuple[float, float] | None = None
    for b in buckets:
        at = int(str(b["RowKey"]).split("|", 1)[0])
        applied = int(b.get("Applied") or 0)
        if at >= now - 60:
            last_minute += applied
        if at >= now - 3600:
            last_hour += applied
        slot = (at - start) // 60
        if 0 <= slot < MINUTES:
            chart[slot]["applied"] += applied
            chart[slot]["errors"] += int(b.get("Errors") or 0)
            chart[slot]["conflicts"] += int(b.get("Conflicts") or 0)
        raw = b.get("LastLatency")
        latency = float(raw) if raw is not None else -1.0
        if latency >= 0 and (latest is None or float(b.get("LastAt") or 0) > latest[0]):
            latest = (float(b.get("LastAt") or 0), latency)
    return {
        "applied_last_minute": last_minute,
        "applied_last_hour": last_hour,
        "latest_latency_ms": round(latest[1], 1) if latest else None,
        "chart": chart,
    }


ACTIVE_RUN_STATES = ("queued", "running")


def sync_run(name: str, runs: Sequence[RunState], now: datetime | None = None) -> dict[str, Any] | None:
    """The sync run to show on the map: one in progress over it — the one working on this map before one still
    waiting its turn, then the newest — with the map's progress (its row samples left out); else the newest run over
    the map if it failed or was held (the map paused), until a newer one starts, with why. A run whose step is gone
    (`liveness.abandoned`) has failed, though its record says `running` until its status is read."""
    at = now or datetime.now(UTC)
    over = [r for r in runs if name in r.maps]
    active = [r for r in over if r.state in ACTIVE_RUN_STATES and not liveness.abandoned(r, at)]

    def working(r: RunState) -> bool:
        p = r.progress.get(name)
        return p is not None and p.state in ("reading", "writing")

    if active:
        run = max(active, key=lambda r: (working(r), r.created_at))
    else:
        newest = max(over, key=lambda r: r.created_at, default=None)
        if newest is None or newest.state not in ("failed", "held", *ACTIVE_RUN_STATES):
            return None  # done: nothing to show
        run = newest.model_copy(deep=True)
        if run.state in ACTIVE_RUN_STATES:
            liveness.abandon(run, at)
    progress = run.progress.get(name)
    report = progress.report() if progress is not None else None
    if report is not None:
        report.pop("samples", None)
    return {"run_id": run.run_id, "mode": str(run.mode), "state": run.state, "message": run.message,
            "progress": report}  # fmt: skip


def _age(now: float, at: float | None) -> float | None:
    return round(max(0.0, now - at), 1) if at is not None else None


async def map_status(
    name: str, maps: MapSet, ledger: Ledger, store: OpsStore, waiting: WaitingChanges, now: float,
    runs: Sequence[RunState] = (),
) -> dict[str, Any]:  # fmt: skip
    state, held, buckets, counts, alert, queued = await asyncio.gather(
        ledger.map_state(name), ledger.held(name), store.buckets(name, now - 3600), store.open_counts(name),
        store.last_alert(name), waiting.oldest(name),
    )  # fmt: skip
    oldest_held = min((e.occurred_at.timestamp() for _, e in held), default=None)
    oldest_queued = queued["occurred_at"].timestamp() if queued else None
    oldest = min((t for t in (oldest_held, oldest_queued) if t is not None), default=None)
    last_alert = alert.model_dump(mode="json") if alert else None
    if last_alert is None and str(state.get("reason", "")).startswith("alert:"):
        last_alert = {"map": name, "rule": "built-in", "what": state["reason"], "at": state.get("since")}
    return {
        "map": name,
        "enabled": maps.maps[name].map.enabled,
        **state,
        "held": len(held),
        # An initial sync or reconciliation in progress over the map.
        "sync_run": sync_run(name, runs, datetime.fromtimestamp(now, UTC)),
        # Lag: the age of the oldest change still waiting — held, queued or deferred — and (in the figures) the
        # latest change-to-target latency.
        "oldest_waiting_seconds": _age(now, oldest),
        "oldest_held_seconds": _age(now, oldest_held),
        "oldest_queued_seconds": _age(now, oldest_queued),
        "oldest_queued_deferred": bool(queued and queued["deferred"]),
        "open_errors": counts[0],
        "open_conflicts": counts[1],
        "last_alert": last_alert,
        **figures(buckets, now),
    }


async def status(
    maps: MapSet, ledger: Ledger, store: OpsStore, waiting: WaitingChanges, runs: Sequence[RunState] = ()
) -> dict[str, Any]:
    now = time.time()
    rows = await asyncio.gather(*(map_status(name, maps, ledger, store, waiting, now, runs) for name in maps.order))
    return {"at": now, "maps": list(rows)}
