"""Every apply outcome passes here (one call from the apply core): counted per map in 10-second buckets for the
console, counted in OpenTelemetry, taken off (or marked deferred on) the map's waiting list, written back onto a
replayed error, and checked against the map's alert rules.

`observe` never blocks or fails apply: counting is in memory; the Table writes, the replay bookkeeping and the
alerts run as background tasks on the running loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord, from_sync_run
from shared.ops import telemetry
from shared.ops.alerts import Alert, AlertRule, cooled_down, fires
from shared.ops.ids import is_replay, original_event_id
from shared.ops.store import BUCKET_SECONDS, Filter, OpsStore
from shared.ops.waiting import Key, WaitingChanges, waiting_key

log = logging.getLogger("ops.observer")
FLUSH_SECONDS = 2.0
RESOLVED_BY_APPLY = ("applied", "conflict", "skipped", "skipped-stale", "skipped-echo", "skipped-filtered")


@dataclass
class Counts:
    applied: int = 0
    skipped: int = 0
    conflicts: int = 0
    errors: int = 0
    held: int = 0
    deferred: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    last_latency: float | None = None
    last_at: float = 0.0

    def add(self, outcome: str, latency_ms: float) -> None:
        if outcome == "applied":
            self.applied += 1
        elif outcome.startswith("skipped"):
            self.skipped += 1
        elif outcome == "conflict":
            self.conflicts += 1
        elif outcome == "error":
            self.errors += 1
        elif outcome == "held":
            self.held += 1
        elif outcome == "deferred":
            self.deferred += 1
        if outcome in ("applied", "conflict"):
            self.latency_sum += latency_ms
            self.latency_count += 1
            self.last_latency = latency_ms
            self.last_at = time.time()

    def entity(self, map_name: str, bucket: int, instance: str) -> dict[str, Any]:
        return {
            "PartitionKey": map_name, "RowKey": f"{bucket:012d}|{instance}", "Applied": self.applied,
            "Skipped": self.skipped, "Conflicts": self.conflicts, "Errors": self.errors, "Held": self.held,
            "Deferred": self.deferred, "LatencySum": self.latency_sum, "LatencyCount": self.latency_count,
            "LastLatency": self.last_latency if self.last_latency is not None else -1.0, "LastAt": self.last_at,
        }  # fmt: skip


@dataclass
class Effects:
    """What the observer acts through (the bridge's own clients, built lazily by `shared.ops.wiring.OpsParts`)."""

    store: OpsStore
    rules: Callable[[str], list[AlertRule]]
    pause: Callable[[str, str], Awaitable[None]]
    notify: Callable[[Alert], Awaitable[None]]
    waiting: WaitingChanges | None = None
    settle_dead_letters: Callable[[str], Awaitable[int]] | None = None  # a replayed change's dead letters, by event id


@dataclass
class Observer:
    effects: Callable[[], Effects]
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _buckets: dict[tuple[str, int], Counts] = field(default_factory=dict)
    _dirty: set[tuple[str, int]] = field(default_factory=set)
    _flusher: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _fired: dict[tuple[str, str], datetime] = field(default_factory=dict)
    _done: set[Key] = field(default_factory=set)  # no longer waiting: taken off the waiting list at the next flush
    _deferred: dict[Key, ChangeEvent] = field(default_factory=dict)
    _rules_broken: bool = False
    _done_unmapped: list[ChangeEvent] = field(default_factory=list)  # final outcomes logged under no map ("-")

    def observe(self, event: ChangeEvent, map_name: str, outcome: str, detail: str, latency_ms: float) -> None:
        try:
            telemetry.record_outcome(map_name, outcome, latency_ms)
            if map_name == "-":
                # No map's outcome (merged into a later change of its row in one batch, or no map reads it): final
                # all the same, so the rows it waits under, one per map reading it, are taken off at the next flush.
                if outcome != "deferred":
                    self._done_unmapped.append(event)
                    loop = asyncio.get_running_loop()
                    if self._flusher is None or self._flusher.done():
                        self._flusher = loop.create_task(self._flush_soon())
                return
            bucket = int(time.time()) // BUCKET_SECONDS * BUCKET_SECONDS
            self._buckets.setdefault((map_name, bucket), Counts()).add(outcome, latency_ms)
            self._dirty.add((map_name, bucket))
            key = waiting_key(map_name, event)
            if outcome == "deferred":
                self._deferred[key] = event
            else:
                self._done.add(key)
                self._deferred.pop(key, None)
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): counted in memory only
        except Exception:
            log.exception("observing an apply outcome failed")
            return
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush_soon())
        if is_replay(event.event_id) or self._has_rules(map_name):
            task = loop.create_task(self._follow_up(event, map_name, outcome, detail, latency_ms))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _has_rules(self, map_name: str) -> bool:
        try:
            return bool(self.effects().rules(map_name))
        except Exception as exc:  # e.g. a malformed ALERT_RULES: said once, and sync goes on
            if not self._rules_broken:
                self._rules_broken = True
                log.error("alert rules unusable, no alert fires: %s", str(exc).splitlines()[0])
            return False

    async def _flush_soon(self) -> None:
        await asyncio.sleep(FLUSH_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        if not (self._dirty or self._done or self._deferred or self._done_unmapped):
            return
        dirty, self._dirty = self._dirty, set()
        done, self._done = self._done, set()
        unmapped, self._done_unmapped = self._done_unmapped, []
        deferred, self._deferred = self._deferred, {}
        rows = [self._buckets[k].entity(k[0], k[1], self.instance) for k in dirty if k in self._buckets]
        try:
            effects = self.effects()
            await effects.store.write_buckets(rows)
        except Exception:
            log.warning("could not write the console's figures; kept for the next flush", exc_info=True)
            self._dirty |= dirty
            self._done |= done
            self._deferred = deferred | self._deferred
            self._done_unmapped = unmapped + self._done_unmapped
            return
        if effects.waiting is not None:
            await effects.waiting.deferred(deferred.items())
            await effects.waiting.done(done | {k for e in unmapped for k in effects.waiting.keys_for(e)})
        horizon = time.time() - 120
        for key in [k for k in self._buckets if k[1] < horizon and k not in self._dirty]:
            del self._buckets[key]

    async def drain(self) -> None:
        """Wait for the background work (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.flush()

    async def _follow_up(self, event: ChangeEvent, map_name: str, outcome: str, detail: str, latency: float) -> None:
        try:
            effects = self.effects()
            if is_replay(event.event_id):
                await self._replayed(effects, event, map_name, outcome)
            await self._alerts(effects, map_name, outcome, detail, latency)
        except Exception:
            log.warning("console follow-up of %s failed", event.event_id, exc_info=True)

    async def _replayed(self, effects: Effects, event: ChangeEvent, map_name: str, outcome: str) -> None:
        """A replay's outcome, written onto the original's error entry: resolved (when, by whom) — and the original
        message settled, wherever it was dead-lettered — or open again with the new message."""
        store = effects.store
        original = original_event_id(event.event_id)
        entry = await store.error_by_event(map_name, original)
        if entry is None:
            return
        row = entry["RowKey"]
        if outcome == "error":
            again = await store.error_by_event(map_name, event.event_id)
            if again is not None:
                new = ErrorRecord.model_validate_json(again["Record"])
                old = ErrorRecord.model_validate_json(entry["Record"])
                record = old.model_copy(update={"message": new.message, "request": new.request,
                                                "status": new.status, "at": new.at})  # fmt: skip
                await store.replace_error_record(map_name, row, record, Status="open")
                # Kept (it stops the replay's redeliveries at once) but folded into the original's entry.
                await store.mark_error(map_name, again["RowKey"], Status="merged", Note=f"replay of {original}")
            else:
                await store.mark_error(map_name, row, Status="open")
        elif outcome in RESOLVED_BY_APPLY:
            await store.mark_error(
                map_name, row, Status="resolved", ResolvedBy=entry.get("ReplayedBy") or "replay",
                ResolvedAt=datetime.now(UTC).isoformat(), Note=f"replayed: {outcome}",
            )  # fmt: skip
            if effects.settle_dead_letters is not None:
                settled = await effects.settle_dead_letters(original)
                log.info(json.dumps({"event": "replay-settled", "event_id": original, "dead_letters": settled}))

    async def waited(self, map_name: str, age_ms: float, detail: str) -> None:
        """The lag watch (`shared.ops.watch`): the map's oldest queued or deferred change has waited `age_ms`; its
        lag rules fire on it as on an outcome (same cooldown, same actions)."""
        await self._alerts(self.effects(), map_name, "waiting", detail, age_ms)

    async def _alerts(self, effects: Effects, map_name: str, outcome: str, detail: str, latency: float) -> None:
        now = datetime.now(UTC)
        for rule in effects.rules(map_name):
            recent = None
            if rule.errors is not None and outcome == "error":
                since = now - timedelta(minutes=rule.minutes)
                found = await effects.store.error_entities(Filter(map=map_name, status="open", since=since))
                recent = sum(not from_sync_run(e["RowKey"]) for e in found)  # a sync run's rows: its own report
            what = fires(rule, outcome, detail, latency, recent)
            if what is None or not cooled_down(self._fired.get((map_name, rule.name)), rule, now):
                continue
            self._fired[(map_name, rule.name)] = now
            alert = Alert(map=map_name, rule=rule.name, what=what, actions=rule.actions, at=now)
            await effects.store.record_alert(alert)
            log.warning(json.dumps({"event": "alert", "map": map_name, "rule": rule.name, "what": what}))
            if "pause" in rule.actions:
                await effects.pause(map_name, f"alert: {rule.name}: {what}")
            if "notify" in rule.actions:
                await effects.notify(alert)


def get_observer() -> Observer:
    """The process's observer: the composition root's (`Bridge.ops`), so it goes with the bridge it acts through."""
    from shared.bridge import bridge  # imported late: the bridge builds apply, which observes here

    return bridge().ops.observer


def observe(event: ChangeEvent, map_name: str, outcome: str, detail: str, latency_ms: float) -> None:
    """The apply core's one hook: never raises, never waits."""
    get_observer().observe(event, map_name, outcome, detail, latency_ms)
