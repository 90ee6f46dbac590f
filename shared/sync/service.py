"""Apply: queued `ChangeEvent`s → the right writes on the other side, exactly once in effect, in batches.

Per change: maps reading it → (held if the map is paused or invalid) → echo? → source record (re-read when the event
is partial) → filter → transform (lookups through the ledger, missing references healed first: `heal.References`) →
the pure plan (`plan.plan_change`: stale? echo? what to write, under which condition) → the write → the ledger.

Writes are optimistic: conditional on the ETag the ledger remembers, or a guarded create for a row never synced, so
a change costs one app request; a 412 (the row changed meanwhile) reads the row and plans again, three-way. The
changes of a batch (one Service Bus session lane) are planned in order and their writes go out together, one
`$batch` per map and target, their ledger entries in entity-group transactions; a row that fails is retried or
error-logged alone. Throttling and transient errors become a `Retry`, a scheduled message.

By job: this module takes a batch of messages and answers each one's outcome; `change` applies one change through
one map; `flush` sends the batch's writes together and guards each change; `writes` carries out one write, its
ledger entry and write-back; `deletes` a delete. The decisions are pure (`plan`, `decide`, `batching`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.events.model import ChangeEvent, Operation
from shared.ledger.model import ErrorRecord, key_text
from shared.maps.loader import MapSet
from shared.maps.model import Side
from shared.maps.transform import CompiledMap
from shared.ops.observer import observe
from shared.sync.batching import Batch, Unit, coalesce, row_of
from shared.sync.change import Changes
from shared.sync.flush import log
from shared.sync.grouped import WriteGroups
from shared.sync.heal import MAX_HEAL_DEPTH, References
from shared.sync.outcome import AlertRule, Message, Outcome, PermanentFailure, Retry, Scheduler
from shared.sync.plan import TAG_PREFIX, integration_key, known_before_reread
from shared.sync.ports import BulkReads, LedgerPort, RowsPort

MAX_ATTEMPTS = 12  # scheduled retries of one change before it goes to the error log (about an hour of backoff)

__all__ = [
    "MAX_HEAL_DEPTH", "TAG_PREFIX", "AlertRule", "ApplyService", "Message", "Outcome", "PermanentFailure", "Retry",
    "Scheduler",
]  # fmt: skip


class ApplyService(Changes):
    def __init__(
        self, maps: MapSet, ledger: LedgerPort, dataverse: RowsPort, fno: RowsPort, alert: AlertRule | None = None,
        before_first: Callable[[], Awaitable[None]] | None = None, schedule: Scheduler | None = None,
    ) -> None:  # fmt: skip
        self.maps = maps
        self.ledger = ledger
        self.dataverse = dataverse
        self.fno = fno
        self.alert = alert or AlertRule()
        self.before_first = before_first  # the maps' check against the apps, once per process (cached by its owner)
        self.schedule = schedule  # puts a change back on the queue for later (a `Retry`)
        self.references = References(maps, ledger, dataverse, fno, self._apply_nested)
        self.write_groups = WriteGroups()

    # --- entry points ---------------------------------------------------------------------------------------------

    async def apply_messages(self, messages: Sequence[Message]) -> list[list[Outcome]]:
        """A batch of queued changes (one session lane, in order). A change to retry is re-scheduled with a backoff,
        until `MAX_ATTEMPTS` (then it goes to the error log); a change that failed for good is error-logged. The
        rest of the batch completes either way. Raises `PermanentFailure` only for a batch of one, so that its
        message is abandoned and ends dead-lettered; in a larger batch the failed change is sent again alone."""
        results = await self.apply_batch([(m.event, m.delivery_count) for m in messages])
        out: list[list[Outcome]] = []
        for message, result in zip(messages, results, strict=True):
            if isinstance(result, list):
                out.append(result)
            elif isinstance(result, Retry):
                out.append(await self._retry_later(message, result))
            elif len(messages) == 1 or self.schedule is None:
                raise result
            else:
                await self.schedule(message.event, 0.0, message.attempt + 1)  # to fail (and dead-letter) alone
                out.append([])
        return out

    async def apply_message(self, event: ChangeEvent, delivery_count: int, attempt: int) -> list[Outcome]:
        return (await self.apply_messages([Message(event, delivery_count, attempt)]))[0]

    async def _retry_later(self, message: Message, retry: Retry) -> list[Outcome]:
        event, attempt = message.event, message.attempt
        if attempt >= MAX_ATTEMPTS or self.schedule is None:
            for compiled in self.maps.reading(event.source, event.entity):
                await self.ledger.record_error(
                    ErrorRecord(map=compiled.map.name, event_id=event.event_id, event=event.model_dump(mode="json"),
                                request="", message=f"gave up after {attempt} retries: {retry.reason}")
                )  # fmt: skip
            raise PermanentFailure(retry.reason) from None
        await self.schedule(event, min(retry.after * (1.5**attempt), 300.0), attempt + 1)
        return [Outcome("-", "deferred", retry.reason)]

    async def handle(self, event: ChangeEvent, delivery_count: int = 1) -> list[Outcome]:
        """One change; raises `Retry` or `PermanentFailure`."""
        result = (await self.apply_batch([(event, delivery_count)]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    async def apply_batch(
        self, items: Sequence[tuple[ChangeEvent, int]]
    ) -> list[list[Outcome] | Retry | PermanentFailure]:
        """Each change's outcomes, or why it must be retried or failed for good."""
        if self.before_first is not None:
            await self.before_first()
        results: list[list[Outcome] | Retry | PermanentFailure] = [[] for _ in items]
        units: list[tuple[Unit, list[int]]] = []
        batch = Batch()
        alone = [await self._holding(event) for event, _ in items]
        merged = coalesce([Message(e, d) for e, d in items], alone)
        await self._read_ahead(batch, [event for event, _, _ in merged])
        chains: dict[str, list[Unit]] = {}
        for event, delivery_count, indices in merged:
            unit = Unit(event, delivery_count)
            units.append((unit, indices))
            for i in indices[:-1]:
                superseded = items[i][0]
                outcome = Outcome("-", "skipped-stale", f"superseded in its batch by {event.event_id}")
                results[i] = [self._log(superseded, outcome)]
            chains.setdefault(event.ordering_key or "|".join(row_of(event)), []).append(unit)

        async def chain(members: list[Unit]) -> None:
            for unit in members:  # one row's changes (its ordering key's) strictly in order
                await self._handle(unit, batch)

        # Different rows are planned side by side (their reads and ledger look-ups overlap); their writes still go
        # out together. Two rows racing for one target row are caught by the ETags and decided again, alone.
        await asyncio.gather(*(chain(members) for members in chains.values()))
        await self._flush(batch)
        for unit, indices in units:
            failure = unit.failure
            results[indices[-1]] = (
                failure if isinstance(failure, Retry | PermanentFailure)
                else PermanentFailure(str(failure)) if failure is not None else unit.outcomes
            )  # fmt: skip
        return results

    async def _read_ahead(self, batch: Batch, events: Sequence[ChangeEvent]) -> None:
        """The F&O rows the batch's changes must re-read, read together (a few requests, not one per change)."""
        if not isinstance(self.fno, BulkReads):
            return
        candidates: list[tuple[CompiledMap, ChangeEvent, dict[str, Any]]] = []
        for event in events:
            if (
                event.source is not Side.FNO
                or event.operation is Operation.DELETE
                or not self._partial(event.source, event)
            ):
                continue
            for compiled in self.maps.reading(event.source, event.entity):
                if (key := integration_key(compiled.map, event.fields | event.keys)) is not None:
                    candidates.append((compiled, event, key))
        # Their ledger entries first, together: a change known before its re-read (our own write seen back, a
        # create synced already) is not read at all. The entries are kept for that check when the change applies.
        entries = await asyncio.gather(*(self.ledger.get(c.map.name, key) for c, _, key in candidates))
        wanted: dict[str, list[dict[str, Any]]] = {}
        for (compiled, event, key), entry in zip(candidates, entries, strict=True):
            batch.entries[(compiled.map.name, key_text(key))] = entry
            if known_before_reread(entry, compiled.map, event) is None:
                wanted.setdefault(compiled.map.name, []).append(key)
        for name, keys in wanted.items():
            if len(keys) > 1:
                rows = await self.fno.read_many(self.maps.maps[name].map, keys)
                batch.reads.update({(name, slot): current for slot, current in rows.items()})

    async def _holding(self, event: ChangeEvent) -> bool:
        """Whether a map reading the change holds its changes (cached while running: no Table read per change)."""
        for compiled in self.maps.reading(event.source, event.entity):
            if await self.ledger.is_paused(compiled.map.name):
                return True
        return False

    async def _handle(self, unit: Unit, batch: Batch | None) -> None:
        event = unit.event
        maps = self.maps.reading(event.source, event.entity)
        if not maps:
            unit.outcomes.append(self._log(event, Outcome("-", "skipped", "no enabled map reads this entity")))
            return
        for compiled in maps:
            m = compiled.map
            if unit.delivery_count > 1 and await self.ledger.error_for(m.name, event.event_id) is not None:
                unit.failure = PermanentFailure(f"{m.name}: already recorded in the error log")
                return
            if not await self._guard(unit, m, self._apply_map(compiled, event.source, event, 0, batch, unit)):
                return

    def _log(self, event: ChangeEvent, outcome: Outcome) -> Outcome:
        """Every outcome of apply goes through here (one place: observers hook in here)."""
        latency = (datetime.now(UTC) - event.occurred_at).total_seconds() * 1000
        log.info(json.dumps({
            "event": "apply", "correlation_id": event.correlation_id or event.event_id, "event_id": event.event_id,
            "map": outcome.map, "outcome": outcome.outcome, "detail": outcome.detail, "writes": outcome.writes,
            "source": str(event.source), "entity": event.entity, "operation": str(event.operation),
            "latency_ms": round(latency, 1),
        }))  # fmt: skip
        observe(event, outcome.map, outcome.outcome, outcome.detail, latency)  # the console, alerts and metrics
        return outcome
