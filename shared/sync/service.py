"""Apply: queued `ChangeEvent`s → the right writes on the other side, exactly once in effect, in batches.

Per change: maps reading it → (held if the map is paused or invalid) → echo? → source record (re-read when the event
is partial) → filter → transform (lookups through the ledger, missing references healed first: `heal.References`) →
the pure plan (`plan.plan_change`: stale? echo? what to write, under which condition) → the write → the ledger.

Writes are optimistic: conditional on the ETag the ledger remembers, or a guarded create for a row never synced, so
a change costs one app request; a 412 (the row changed meanwhile) reads the row and plans again, three-way. The
changes of a batch (one Service Bus session lane) are planned in order and their writes go out together, one
`$batch` per map and target, their ledger entries in entity-group transactions; a row that fails is retried or
error-logged alone. Throttling and transient errors become a `Retry`, a scheduled message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.connectors.errors import ConcurrencyConflict, ConnectorError, NotFound, ValidationFailed
from shared.events.model import ChangeEvent, Operation
from shared.ledger.model import ErrorRecord, LedgerEntry, key_text
from shared.ledger.tables import LedgerConflict
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, TargetRow, passes_filter, plain, transform
from shared.ops.observer import observe
from shared.sync.batching import Batch as _Batch
from shared.sync.batching import Change as _Change
from shared.sync.batching import Unit as _Unit
from shared.sync.batching import coalesce
from shared.sync.batching import row_of as _row_of
from shared.sync.decide import fingerprint, normalize
from shared.sync.heal import MAX_HEAL_DEPTH, References, Resolver, synthetic
from shared.sync.outcome import AlertRule, Message, Outcome, PermanentFailure, Retry, Scheduler
from shared.sync.plan import TAG_PREFIX, can_assume, known_before_reread, plan_change, settle, skip_reason, source_etag
from shared.sync.ports import BulkReads, LedgerPort, RowsPort
from shared.sync.rows import Current, RowWrite, Written, row_slot

MAX_ATTEMPTS = 12  # scheduled retries of one change before it goes to the error log (about an hour of backoff)
MAX_DECISION_ROUNDS = 4
log = logging.getLogger("sync.apply")

__all__ = [
    "MAX_HEAL_DEPTH", "TAG_PREFIX", "AlertRule", "ApplyService", "Message", "Outcome", "PermanentFailure", "Retry",
    "Scheduler",
]  # fmt: skip


class _Unread:
    """No ledger entry read ahead for this row (as opposed to one read ahead and found absent: None)."""


_UNREAD = _Unread()


def _integration_key(m: TableMap, record: Mapping[str, Any]) -> dict[str, Any] | None:
    key: dict[str, Any] = {}
    for name in m.fno.key:
        value = plain(record.get(name))
        if value in (None, ""):
            return None
        key[name] = str(value).lower() if name == m.company_field(Side.FNO) else value
    return key


class ApplyService:
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

    def rows(self, side: Side) -> RowsPort:
        return self.dataverse if side is Side.DATAVERSE else self.fno

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
        units: list[tuple[_Unit, list[int]]] = []
        batch = _Batch()
        alone = [await self._holding(event) for event, _ in items]
        merged = coalesce([Message(e, d) for e, d in items], alone)
        await self._read_ahead(batch, [event for event, _, _ in merged])
        chains: dict[str, list[_Unit]] = {}
        for event, delivery_count, indices in merged:
            unit = _Unit(event, delivery_count)
            units.append((unit, indices))
            for i in indices[:-1]:
                superseded = items[i][0]
                outcome = Outcome("-", "skipped-stale", f"superseded in its batch by {event.event_id}")
                results[i] = [self._log(superseded, outcome)]
            chains.setdefault(event.ordering_key or "|".join(_row_of(event)), []).append(unit)

        async def chain(members: list[_Unit]) -> None:
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

    async def _read_ahead(self, batch: _Batch, events: Sequence[ChangeEvent]) -> None:
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
                if (key := _integration_key(compiled.map, event.fields | event.keys)) is not None:
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

    async def _handle(self, unit: _Unit, batch: _Batch | None) -> None:
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

    async def _guard(self, unit: _Unit, m: TableMap, work: Awaitable[Outcome | None]) -> bool:
        """Run one map's apply for `unit`, turning what goes wrong into the unit's failure; False when it failed."""
        try:
            outcome = await work
        except ConnectorError as exc:
            if exc.retryable:
                after = float(getattr(exc, "retry_after", 5.0) or 5.0)
                self._log(unit.event, Outcome(m.name, "deferred", str(exc)))
                unit.failure = Retry(after, str(exc))
            else:
                await self._error(m, unit.event, exc)
                unit.failure = PermanentFailure(str(exc))
            return False
        except Retry as retry:
            self._log(unit.event, Outcome(m.name, "deferred", retry.reason))
            unit.failure = retry
            return False
        if outcome is not None:  # None: its write waits in the batch
            unit.outcomes.append(self._log(unit.event, outcome))
        return True

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

    async def _error(self, m: TableMap, event: ChangeEvent, exc: ConnectorError) -> None:
        await self.ledger.record_error(
            ErrorRecord(map=m.name, event_id=event.event_id, event=event.model_dump(mode="json"),
                        request=exc.request, message=exc.message, status=exc.status)
        )  # fmt: skip
        self._log(event, Outcome(m.name, "error", str(exc)))
        if await self.ledger.recent_error_count(m.name, self.alert.minutes) >= self.alert.errors:
            reason = f"alert: {self.alert.errors} or more errors within {self.alert.minutes:g} minutes"
            await self.ledger.set_map_state(m.name, "paused", reason)
            log.warning(json.dumps({"event": "alert", "map": m.name, "reason": reason}))

    # --- one map --------------------------------------------------------------------------------------------------

    async def _apply_nested(self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int) -> Outcome | None:
        return await self._apply_map(compiled, side, event, depth)

    async def _apply_map(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, batch: _Batch | None = None,
        unit: _Unit | None = None, read: bool = False,
    ) -> Outcome | None:  # fmt: skip
        m = compiled.map
        if event.write_tag and event.write_tag.startswith(TAG_PREFIX):
            return Outcome(m.name, "skipped-echo", "our own write (tag)")  # never applied, paused or not
        if depth == 0 and not read and await self.ledger.is_paused(m.name):
            await self.ledger.hold(m.name, event)
            return Outcome(m.name, "held", "the map is paused or failed its check")
        if depth > 0 and (await self.ledger.map_state(m.name))["state"] == "invalid":  # no healing through it
            raise Retry(10.0, f"the referenced map {m.name} failed its check against the apps' metadata")
        if event.operation is Operation.DELETE:
            return await self._delete(m, side, event)
        for _ in range(MAX_DECISION_ROUNDS):
            try:
                return await self._apply_change(compiled, side, event, depth, read, batch, unit)
            except (ConcurrencyConflict, LedgerConflict) as exc:
                log.info("concurrent change on %s (%s); reading the row and deciding again", m.name, exc)
                read, batch = True, None
        raise Retry(1.0, "the row kept changing while being applied")

    @staticmethod
    def _partial(side: Side, event: ChangeEvent) -> bool:
        return event.reread_required or (side is Side.FNO and event.operation is Operation.UPDATE)

    async def _source_record(
        self, m: TableMap, side: Side, event: ChangeEvent, batch: _Batch | None = None
    ) -> tuple[dict[str, Any], str | None, str | None]:
        """The source row's values, version and ETag (when read). F&O updates carry only the changed fields, and a
        cut Dataverse payload carries none: those are re-read, so a late or re-scheduled event applies the row as
        it is now."""
        record: dict[str, Any] = dict(event.fields)
        if not self._partial(side, event):
            return record, event.source_version, None
        if side is Side.DATAVERSE:
            current = await self.dataverse.read(m, event.row_id)
        else:
            key = _integration_key(m, record | event.keys) or await self.ledger.key_for(m.name, side, event.row_id)
            ahead = batch.reads.pop((m.name, row_slot(key)), None) if batch is not None and key else None
            current = ahead or (await self.fno.read(m, key) if key else None)
        if current is None:
            return record, event.source_version, None
        return current.record, current.version or event.source_version, current.etag

    async def _apply_change(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, read: bool, batch: _Batch | None,
        unit: _Unit | None, *, catch_up: bool = False,
    ) -> Outcome | None:  # fmt: skip
        """`catch_up`: the event is the source row as it is now, read because the ledger marked that side `ahead`
        (or a write-back just found it moved on); its version may equal the one recorded."""
        m = compiled.map
        into = side.other
        early: tuple[dict[str, Any], LedgerEntry | None] | None = None
        if side is Side.FNO and self._partial(side, event):
            # Redelivered, a create of a row synced already, or our own write seen back: known before the re-read,
            # no app request for it. (Its version cannot be compared yet: an F&O event's number is not the row
            # version its ETag carries.)
            if (early_key := _integration_key(m, event.fields | event.keys)) is not None:
                ahead = batch.entries.pop((m.name, key_text(early_key)), _UNREAD) if batch is not None else _UNREAD
                known = ahead if not isinstance(ahead, _Unread) else await self.ledger.get(m.name, early_key)
                early = (early_key, known)
                if (skip := known_before_reread(known, m, event)) is not None:
                    return Outcome(m.name, *skip)
        record, source_version, source_tag = await self._source_record(m, side, event, batch)
        if not passes_filter(compiled, side, record):
            return Outcome(m.name, "skipped-filtered", "the row does not pass the map's filter")
        resolver = await self.references.prepare(compiled, side, record, depth)
        row = transform(compiled, side, record, self.maps.maps, resolver)
        if row.errors:
            raise _validation(m, "; ".join(row.errors))
        if row.missing:
            names = ", ".join(f"{r.field} → {r.map}" for r in row.missing)
            raise Retry(10.0, f"referenced rows not synced yet: {names}")
        key = row.key if into is Side.FNO else _integration_key(m, record | event.keys)
        if into is Side.FNO and key is not None:
            key = {k: (str(v).lower() if k == m.company_field(Side.FNO) else v) for k, v in key.items()}
        if not key:
            raise _validation(m, "the row's integration key is incomplete")
        if batch is not None and batch.holds(m.name, key):
            await self._flush(batch)  # the row's earlier write first: order per row
        entry = early[1] if early is not None and early[0] == key else await self.ledger.get(m.name, key)
        seen = fingerprint(record, m.readable(side))
        skip = skip_reason(entry, side, event, source_version, seen, catch_up=catch_up)
        if skip is not None:
            assert entry is not None
            if entry.side(side).ahead and not catch_up:
                if skip[0] == "skipped-stale" and depth < MAX_HEAL_DEPTH:
                    return await self._catch_up(compiled, side, event, entry, depth)
                if skip[0] == "skipped-echo":  # nothing of its own after all: no catch-up owed
                    entry.side(side).ahead = False
                    await self.ledger.save(entry)
            return Outcome(m.name, *skip)
        assume = not read and can_assume(entry, into)
        current = None if assume else await self._read_target(m, into, row, entry)
        plan = plan_change(m, side, event, row, key, entry, current, read=not assume)
        if plan.park:  # nothing is written: the conflict waits for a person
            if plan.conflict is not None:
                await self.ledger.record_conflict(plan.conflict)
            return Outcome(m.name, "conflict", plan.detail)
        change = _Change(compiled, side, event, depth, record, source_version, source_tag, row, key, entry, current,
                         plan)  # fmt: skip
        if plan.write is not None and batch is not None and unit is not None and depth == 0:
            batch.add(change, unit)
            return None
        written = await self._write(change) if plan.write is not None else None
        entry, writes, moved = await self._settle(change, written)
        await self.ledger.save(entry)
        return await self._done(change, writes, moved)

    async def _catch_up(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, entry: LedgerEntry, depth: int
    ) -> Outcome | None:
        """A stale notification of a row marked `ahead`: sync the row as it is now (the catch-up a write-back started
        and could not finish — throttled, or the host died — is owed, and this notification may be the last one)."""
        m = compiled.map
        state = entry.side(side)
        now = (
            await self.dataverse.read(m, state.row_id or event.row_id) if side is Side.DATAVERSE
            else await self.fno.read(m, entry.key)
        )  # fmt: skip
        if now is None:
            return Outcome(m.name, "skipped-stale", "the row is gone; its delete is on its way")
        follow = synthetic(side, m, state.row_id or event.row_id, now)
        return await self._apply_change(compiled, side, follow, depth + 1, True, None, None, catch_up=True)

    async def _read_target(self, m: TableMap, into: Side, row: TargetRow, entry: LedgerEntry | None) -> Current | None:
        if into is Side.FNO:
            return await self.fno.read(m, row.key)
        known = entry.dataverse.row_id if entry is not None else None
        return await self.dataverse.read(m, known or row.key)

    def _row_write(self, change: _Change) -> RowWrite:
        w = change.plan.write
        assert w is not None
        return RowWrite(change.row.key, w.values, w.lookups, w.if_match, w.create, w.tag)

    async def _write(self, change: _Change) -> Written:
        """The change's write alone; a Dataverse lookup to a row that is not there heals it from F&O first."""
        w = self._row_write(change)
        rows = self.rows(change.side.other)
        m = change.compiled.map
        try:
            return await rows.write(m, w.key, w.values, w.lookups, if_match=w.if_match, create=w.create, tag=w.tag)
        except NotFound as exc:
            if (
                change.side.other is not Side.DATAVERSE
                or not w.lookups
                or not await self.references.from_fno(change.compiled, change.record, change.row, change.depth)
            ):
                raise Retry(30.0, f"a referenced row does not exist in Dataverse: {exc.message}") from exc
            return await rows.write(m, w.key, w.values, w.lookups, if_match=w.if_match, create=w.create, tag=w.tag)

    async def _settle(self, change: _Change, written: Written | None) -> tuple[LedgerEntry, int, Current | None]:
        """The ledger entry once the write is done, with the write-back into the source when the plan has one."""
        c = change
        m = c.compiled.map
        base = dict(c.entry.side(c.side.other).values) if c.entry is not None else {}  # `settle` updates it in place
        entry = settle(c.plan, m, c.side, c.event, c.record, c.source_version, c.row, c.key, c.entry, c.current,
                       written, c.source_tag)  # fmt: skip
        writes = 1 if written is not None else 0
        moved: Current | None = None
        if c.plan.back and c.current is not None:
            # Conditional on the source row as the plan read it (its ETag, where known): a person's change made in
            # the source meanwhile is never replaced blindly.
            if_match = c.source_tag or (source_etag(c.side, c.source_version, None) if c.source_version else None)
            wrote, moved = await self._write_back(
                c.compiled, c.side, c.event, c.key, c.current, c.plan.back, entry, if_match or "*", base
            )
            writes += wrote
        return entry, writes, moved

    async def _done(self, change: _Change, writes: int, moved: Current | None) -> Outcome:
        c = change
        m = c.compiled.map
        if c.plan.conflict is not None:
            # Recorded once its write (and ledger entry) went through: a plan whose write met a 412 is decided
            # again, and its record would claim a winner for a write that never happened.
            await self.ledger.record_conflict(c.plan.conflict)
        if moved is not None and c.depth < MAX_HEAL_DEPTH:
            # The source row had moved on past this change: sync it as it is now, before its own (older-looking)
            # notifications arrive and find the ledger already past them.
            # Like `_apply_map`: a concurrent change (a 412, or the ledger entry moved) reads the source row again
            # and decides again; it never error-logs the change nor escapes the batch.
            follow: ChangeEvent | None = synthetic(c.side, m, c.event.row_id, moved)
            for _ in range(MAX_DECISION_ROUNDS):
                try:
                    if follow is not None:
                        again = await self._apply_change(
                            c.compiled, c.side, follow, c.depth + 1, True, None, None, catch_up=True
                        )
                    elif (entry := await self.ledger.get(m.name, c.key)) is not None:
                        again = await self._catch_up(c.compiled, c.side, c.event, entry, c.depth)
                    else:
                        again = None
                    break
                except (ConcurrencyConflict, LedgerConflict) as exc:
                    log.info("concurrent change on %s (%s); reading the source row and deciding again", m.name, exc)
                    follow = None
            else:
                raise Retry(1.0, "the row kept changing while its catch-up was applied")
            writes += again.writes if again is not None else 0
        return Outcome(m.name, "conflict" if c.plan.conflict else "applied", c.plan.detail, writes)

    # --- a batch's writes -----------------------------------------------------------------------------------------

    async def _flush(self, batch: _Batch) -> None:
        """The waiting writes, one `$batch` per map and target; then their ledger entries, together. A row whose
        write or ledger entry met a concurrent change is read and decided again, alone."""
        pending, batch.pending, batch.keys = batch.pending, [], set()
        groups: dict[tuple[Side, str], list[tuple[_Change, _Unit]]] = {}
        for change, unit in pending:
            groups.setdefault((change.side.other, change.compiled.map.name), []).append((change, unit))
        settled: list[tuple[_Change, _Unit, LedgerEntry, int, Current | None]] = []
        again: list[tuple[_Change, _Unit]] = []
        for (into, _), members in groups.items():
            m = members[0][0].compiled.map
            try:
                answers = await self.rows(into).write_many(m, [self._row_write(c) for c, _ in members])
            except ConnectorError as exc:  # the whole request failed (throttled, unreachable): each row alike
                answers = [exc] * len(members)
            for (change, unit), answer in zip(members, answers, strict=True):
                if isinstance(answer, Written):
                    await self._guard(unit, m, self._settled(change, unit, answer, settled))
                elif isinstance(answer, ConcurrencyConflict):
                    again.append((change, unit))
                elif isinstance(answer, NotFound) and change.plan.write and change.plan.write.lookups:
                    again.append((change, unit))  # alone, so its missing reference can heal
                else:
                    await self._guard(unit, m, _raise(answer))
        if settled:
            saved = await self.ledger.save_many([entry for _, _, entry, _, _ in settled])
            for (change, unit, _, writes, moved), result in zip(settled, saved, strict=True):
                if isinstance(result, LedgerConflict):
                    again.append((change, unit))
                elif isinstance(result, Exception):
                    # Its app write went out, its ledger entry did not: this change alone is tried again later (it
                    # then reads the target and decides again), never the whole batch.
                    reason = f"its ledger entry was not saved: {result}"
                    await self._guard(unit, change.compiled.map, _raise(Retry(5.0, reason)))
                else:
                    await self._guard(unit, change.compiled.map, self._done(change, writes, moved))
        for change, unit in again:
            c = change
            await self._guard(unit, c.compiled.map, self._apply_map(c.compiled, c.side, c.event, c.depth, read=True))

    async def _settled(
        self, change: _Change, unit: _Unit, written: Written,
        into: list[tuple[_Change, _Unit, LedgerEntry, int, Current | None]],
    ) -> None:  # fmt: skip
        entry, writes, moved = await self._settle(change, written)
        into.append((change, unit, entry, writes, moved))

    async def _write_back(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, key: dict[str, Any], current: Current,
        columns: set[str], entry: LedgerEntry, if_match: str = "*", base: Mapping[str, Any] | None = None,
    ) -> tuple[int, Current | None]:  # fmt: skip
        """Copy the target's own changes (and the columns it won) back into the source, so both converge even
        though the target's own, older notification will now be skipped as stale. Returns the source row when it
        holds changes not synced yet."""
        m = compiled.map
        into = side.other
        back = transform(compiled, into, current.record, self.maps.maps, Resolver())
        names = {}
        for column in columns:
            f = m.field_for(into, column)
            source_name = (f.fno if side is Side.FNO else f.dataverse) if f else None
            if f is not None and source_name and m.flows(f, side) and source_name in back.values:
                names[source_name] = back.values[source_name]
        if not names:
            return 0, None
        tag = f"{TAG_PREFIX}{event.event_id}:back"
        write_key = key if side is Side.FNO else back.key
        state = entry.side(side)
        try:
            written = await self.rows(side).write(m, write_key, names, {}, if_match=if_match, create=False, tag=tag)
        except ConcurrencyConflict:
            # The source row changed since the plan read it: nothing written back. It is synced as it now is, three-
            # way against the target (a catch-up), now or, if that fails, on its next notification (`ahead`).
            moved = (
                await self.fno.read(m, key) if side is Side.FNO
                else await self.dataverse.read(m, state.row_id or event.row_id)
            )  # fmt: skip
            # The target's own changes in those columns are not synced either: their base stays as it was, so the
            # catch-up sees them as the target's changes (else it would write the source's older values over them).
            # Nor is the target known synced: the next write into it reads it first, and its own notification
            # (older than our write) catches it up rather than being skipped.
            target = entry.side(into)
            for column in columns:
                if base is not None and column in base:
                    target.values[column] = base[column]
                else:
                    target.values.pop(column, None)
            target.etag = None
            target.ahead = True
            state.etag = None
            state.ahead = True
            return 0, moved
        state.values = {**state.values, **{n: normalize(v) for n, v in names.items()}}
        entry.side(into).values = {**entry.side(into).values, **fingerprint(current.record, current.record)}
        # Where the source's ETag was unknown the write-back did not check its version (If-Match: *): the row may
        # hold newer changes than the one being applied (shuffled delivery). Its new version is ours only if it
        # holds nothing we have not synced; else the notifications of those changes would be skipped as stale and
        # the two apps would stay apart.
        now: Current | None = (
            Current(written.record, written.etag, written.row_id) if written.record is not None
            else await self.fno.read(m, key) if side is Side.FNO
            else await self.dataverse.read(m, state.row_id or event.row_id)
        )  # fmt: skip
        unsynced = now is not None and any(
            state.values.get(n) != v for n, v in fingerprint(now.record, m.readable(side)).items()
        )
        if unsynced and now is not None:
            # Its notifications of those changes are older than this write-back: their images hold values it
            # replaced, so they must be stale now — the row itself is synced as it is (a catch-up), now or, if that
            # fails, on its next notification (`ahead`).
            state.version = now.version or written.version or state.version
            state.etag = None  # its ETag is not of a state we synced: the next write into it reads it first
            state.ahead = True
            return 1, now
        state.version = written.version or state.version
        state.etag = written.etag or (now.etag if now is not None else None)
        return 1, None

    # --- deletes --------------------------------------------------------------------------------------------------

    async def _delete(self, m: TableMap, side: Side, event: ChangeEvent) -> Outcome:
        key = await self.ledger.key_for(m.name, side, event.row_id) or _integration_key(m, event.fields | event.keys)
        entry = await self.ledger.get(m.name, key) if key else None
        if entry is None or key is None:
            return Outcome(m.name, "skipped", "a row the bridge never synced")
        if entry.deleted:
            return Outcome(m.name, "skipped-echo", "already deleted")
        into = side.other
        writes = 0
        if m.delete == "ignore":
            return Outcome(m.name, "skipped", "the map ignores deletes")
        tag = f"{TAG_PREFIX}{event.event_id}"
        if into is Side.FNO:
            if m.delete == "delete":  # F&O has no deactivation: `deactivate` leaves the row
                try:
                    await self.fno.delete(m, key, tag)
                    writes = 1
                except NotFound:
                    pass
        else:
            row_id = entry.dataverse.row_id
            if not row_id:
                raise _validation(m, "the Dataverse row id is unknown")
            try:
                if m.delete == "delete":
                    await self.dataverse.delete(m, row_id, tag)
                else:
                    await self.dataverse.deactivate(m, row_id, tag)
                writes = 1
            except NotFound:
                pass
        entry.deleted = True
        entry.side(into).etag = None
        entry.side(side).last_event = event.event_id
        await self.ledger.save(entry)
        return Outcome(m.name, "applied", f"{m.delete} on {into}", writes)


async def _raise(exc: Exception) -> None:
    raise exc


def _validation(m: TableMap, message: str) -> ConnectorError:
    return ValidationFailed(message, request=f"map {m.name}")
