"""Apply: one queued `ChangeEvent` → the right write on the other side, exactly once in effect.

event → maps reading it → (held if the map is paused) → echo? → source record (re-read when the event is partial)
→ filter → transform (lookups resolved through the ledger, missing references synced first) → ledger: stale?
echo? → the target row now → three-way resolution (conflicts by the map's policy, recorded) → conditional write,
tagged → the ledger records both sides. A concurrent change (a 412 from the app or the ledger) re-runs the
decision; throttling and transient errors become a `Retry` the trigger turns into a scheduled message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import JsonValue

from shared.connectors.errors import ConcurrencyConflict, ConnectorError, NotFound, Throttled
from shared.events.model import ChangeEvent, Operation, Source, event_id
from shared.events.values import decimal_value
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, TargetRow, passes_filter, plain, transform
from shared.ops.observer import observe
from shared.sync.decide import fingerprint, is_newer, normalize, resolve
from shared.sync.rows import Current, DataverseRows, FnoRows, Written

TAG_PREFIX = "bridge:"
MAX_DECISION_ROUNDS = 4
MAX_HEAL_DEPTH = 3
log = logging.getLogger("sync.apply")


class Retry(Exception):
    """Try this change again later (re-scheduled, never slept on inside the session)."""

    def __init__(self, after: float, reason: str) -> None:
        super().__init__(reason)
        self.after = after
        self.reason = reason


class PermanentFailure(Exception):
    """The change cannot be applied as it is; recorded in the error log, and the message is dead-lettered."""


@dataclass
class Outcome:
    map: str
    outcome: (
        str  # applied | skipped-stale | skipped-echo | skipped-filtered | skipped | conflict | held | deferred | error
    )
    detail: str = ""
    writes: int = 0


@dataclass
class AlertRule:
    errors: int = 5
    minutes: float = 5.0


class _Resolver:
    """The transforms' `ReferenceResolver`, filled before the (synchronous) transform runs."""

    def __init__(self) -> None:
        self.fno_keys: dict[tuple[str, str], dict[str, JsonValue]] = {}
        self.companies: dict[str, str] = {}

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        return self.fno_keys.get((map_name, dataverse_id.lower()))

    def company_code(self, dataverse_company_id: str) -> str | None:
        return self.companies.get(dataverse_company_id.lower())


def _integration_key(m: TableMap, record: Mapping[str, Any]) -> dict[str, Any] | None:
    key: dict[str, Any] = {}
    for name in m.fno.key:
        value = plain(record.get(name))
        if value in (None, ""):
            return None
        key[name] = str(value).lower() if name == m.company_field(Side.FNO) else value
    return key


@dataclass
class _Context:
    event: ChangeEvent
    depth: int = 0
    outcomes: list[Outcome] = field(default_factory=list)


class ApplyService:
    def __init__(
        self, maps: MapSet, ledger: Ledger, dataverse: DataverseRows, fno: FnoRows, alert: AlertRule | None = None,
        before_first: Callable[[], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.maps = maps
        self.ledger = ledger
        self.dataverse = dataverse
        self.fno = fno
        self.alert = alert or AlertRule()
        self.before_first = before_first  # the maps' check against the apps, once per process (cached by its owner)

    @staticmethod
    def maps_side(event: ChangeEvent) -> Side:
        return Side(str(event.source))

    # --- entry point ----------------------------------------------------------------------------------------------

    async def handle(self, event: ChangeEvent, delivery_count: int = 1) -> list[Outcome]:
        if self.before_first is not None:
            await self.before_first()
        side = Side(str(event.source))
        maps = self.maps.reading(side, event.entity)
        if not maps:
            return [self._log(event, Outcome("-", "skipped", "no enabled map reads this entity"))]
        outcomes = []
        for compiled in maps:
            m = compiled.map
            if delivery_count > 1 and await self.ledger.error_for(m.name, event.event_id) is not None:
                raise PermanentFailure(f"{m.name}: already recorded in the error log")
            try:
                outcome = await self._apply_map(compiled, side, event, 0)
            except (Throttled, ConnectorError) as exc:
                if exc.retryable:
                    after = exc.retry_after if isinstance(exc, Throttled) else 5.0
                    self._log(event, Outcome(m.name, "deferred", str(exc)))
                    raise Retry(after, str(exc)) from exc
                await self._error(m, event, exc)
                raise PermanentFailure(str(exc)) from exc
            outcomes.append(self._log(event, outcome))
        return outcomes

    def _log(self, event: ChangeEvent, outcome: Outcome) -> Outcome:
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

    async def _apply_map(self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int) -> Outcome:
        m = compiled.map
        if event.write_tag and event.write_tag.startswith(TAG_PREFIX):
            return Outcome(m.name, "skipped-echo", "our own write (tag)")  # never applied, paused or not
        if depth == 0 and await self.ledger.is_paused(m.name):
            await self.ledger.hold(m.name, event)
            return Outcome(m.name, "held", "the map is paused or failed its check")
        if depth > 0 and (await self.ledger.map_state(m.name))["state"] == "invalid":  # no healing through it
            raise Retry(10.0, f"the referenced map {m.name} failed its check against the apps' metadata")
        if event.operation is Operation.DELETE:
            return await self._delete(m, side, event)
        for _ in range(MAX_DECISION_ROUNDS):
            try:
                return await self._apply_change(compiled, side, event, depth)
            except (ConcurrencyConflict, LedgerConflict) as exc:
                log.info("concurrent change on %s (%s); deciding again", m.name, exc)
        raise Retry(1.0, "the row kept changing while being applied")

    async def _source_record(self, m: TableMap, side: Side, event: ChangeEvent) -> tuple[dict[str, Any], str | None]:
        """The source row's values. F&O updates carry only the changed fields, and a cut Dataverse payload
        carries none: those are re-read, so a late or re-scheduled event applies the row as it is now."""
        record: dict[str, Any] = dict(event.fields)
        partial = event.reread_required or (side is Side.FNO and event.operation is Operation.UPDATE)
        if not partial:
            return record, event.source_version
        if side is Side.DATAVERSE:
            current = await self.dataverse.read(m, event.row_id)
        else:
            key = _integration_key(m, record | event.keys) or await self.ledger.key_for(m.name, side, event.row_id)
            current = await self.fno.read(m, key) if key else None
        if current is None:
            return record, event.source_version
        return current.record, current.version or event.source_version

    async def _prepare(self, compiled: CompiledMap, side: Side, record: Mapping[str, Any], depth: int) -> _Resolver:
        """Resolve what the transform needs from I/O: company codes and the F&O keys of referenced rows, syncing a
        referenced row first when the ledger does not know it yet (a missing reference heals, it does not block)."""
        m = compiled.map
        resolver = _Resolver()
        if side is not Side.DATAVERSE:
            return resolver
        company = m.company_field(Side.DATAVERSE)
        value = record.get(company) if company else None
        if isinstance(value, dict) and value.get("id"):
            code = await self.dataverse.company_code(str(value["id"]))
            if code:
                resolver.companies[str(value["id"]).lower()] = code
        for f in m.fields:
            if not f.lookup or not f.dataverse or not m.flows(f, Side.FNO):
                continue
            ref = record.get(f.dataverse)
            if not isinstance(ref, dict) or not ref.get("id"):
                continue
            ref_id = str(ref["id"]).lower()
            key = await self.ledger.key_for(f.lookup, Side.DATAVERSE, ref_id)
            if key is None and depth < MAX_HEAL_DEPTH and f.lookup in self.maps.maps:
                referenced = self.maps.maps[f.lookup]
                if any(referenced.map.flows(g, Side.FNO) for g in referenced.map.fields):
                    await self._heal_from_dataverse(referenced, ref_id, depth)
                else:  # F&O masters the row (released products): sync F&O's row, found by the Dataverse row's key
                    await self._heal_through_fno(
                        referenced, ref_id, next(iter(resolver.companies.values()), None), depth
                    )
                key = await self.ledger.key_for(f.lookup, Side.DATAVERSE, ref_id)
            if key is not None:
                resolver.fno_keys[(f.lookup, ref_id)] = key
        return resolver

    async def _heal_from_dataverse(self, referenced: CompiledMap, row_id: str, depth: int) -> None:
        current = await self.dataverse.read(referenced.map, row_id)
        if current is None:
            return
        await self._apply_map(
            referenced, Side.DATAVERSE, self._synthetic(Side.DATAVERSE, referenced.map, row_id, current), depth + 1
        )

    async def _heal_through_fno(self, referenced: CompiledMap, row_id: str, company: str | None, depth: int) -> None:
        """A Dataverse row the bridge has not synced, of a map only F&O writes: its F&O row, by the Dataverse row's
        integration key (and the referencing row's company), synced F&O → Dataverse first, so the ledger knows it."""
        r = referenced.map
        dataverse_row = await self.dataverse.read(r, row_id)
        if dataverse_row is None:
            return
        key: dict[str, Any] = {}
        for column in r.dataverse.key:
            f = r.field_for(Side.DATAVERSE, column)
            if f is not None and f.fno:
                key[f.fno] = plain(dataverse_row.record.get(column))
        if r.company is not None and r.company.dataverse is None:
            key[r.company.fno] = (company or r.company.default or "").lower()
        current = await self.fno.read(r, key) if all(v not in (None, "") for v in key.values()) else None
        if current is not None:
            event = self._synthetic(Side.FNO, r, json.dumps(key, sort_keys=True), current)
            await self._apply_map(referenced, Side.FNO, event, depth + 1)

    async def _heal_from_fno(
        self, compiled: CompiledMap, record: Mapping[str, Any], row: TargetRow, depth: int
    ) -> bool:
        """F&O → Dataverse and a lookup's row is not in Dataverse: sync the referenced rows from F&O first."""
        healed = False
        for f in compiled.map.fields:
            if not f.lookup or not f.fno or f.lookup not in self.maps.maps or record.get(f.fno) in (None, ""):
                continue
            referenced = self.maps.maps[f.lookup]
            r = referenced.map
            own = [k for k in r.fno.key if k != r.company_field(Side.FNO)]
            if len(own) != 1:
                continue
            key: dict[str, Any] = {own[0]: plain(record[f.fno])}
            if r.company is not None:
                key[r.company.fno] = row.company
            if await self.ledger.get(r.name, key) is not None:
                continue
            current = await self.fno.read(r, key)
            if current is not None:
                event = self._synthetic(Side.FNO, r, json.dumps(key, sort_keys=True), current)
                await self._apply_map(referenced, Side.FNO, event, depth + 1)
                healed = True
        return healed

    def _synthetic(self, side: Side, m: TableMap, row_id: str, current: Current) -> ChangeEvent:
        entity = m.dataverse.table if side is Side.DATAVERSE else m.fno.entity
        return ChangeEvent(
            event_id=event_id("heal", side, m.name, row_id, current.version), source=Source(str(side)), entity=entity,
            operation=Operation.UPDATE, row_id=row_id, source_version=current.version,
            fields={n: decimal_value(v) if isinstance(v, Decimal) else v for n, v in current.record.items()},
            occurred_at=datetime.now(UTC),
        )  # fmt: skip

    async def _apply_change(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, catch_up: bool = False
    ) -> Outcome:
        """`catch_up`: the event is the source row as it is now, read because the ledger marked that side `ahead`;
        its version may equal the one recorded."""
        m = compiled.map
        into = side.other
        record, source_version = await self._source_record(m, side, event)
        if not passes_filter(compiled, side, record):
            return Outcome(m.name, "skipped-filtered", "the row does not pass the map's filter")
        resolver = await self._prepare(compiled, side, record, depth)
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
        entry = await self.ledger.get(m.name, key)
        source_names = m.readable(side)
        seen = fingerprint(record, source_names)
        if entry is not None:
            state = entry.side(side)
            fresh = is_newer(source_version, state.version) or (catch_up and source_version == state.version)
            if event.event_id == state.last_event or not fresh:
                if state.ahead and not catch_up and depth < MAX_HEAL_DEPTH:
                    return await self._catch_up(compiled, side, event, entry, depth)
                return Outcome(m.name, "skipped-stale", f"version {source_version} ≤ {state.version}")
            if not entry.deleted and all(state.values.get(n) == v for n, v in seen.items()):
                if state.ahead:  # nothing of its own after all: no catch-up owed
                    state.ahead = False
                    await self.ledger.save(entry)
                return Outcome(m.name, "skipped-echo", "no value differs from what was last synced")
        # The target row as it is now, and what the source wants written there.
        current = await self._read_target(m, into, row, entry)
        proposed = {c: normalize(v) for c, v in row.values.items()}
        base = entry.side(into).values if entry is not None and not entry.deleted else None
        # The target's columns that can change on their own and flow back: those synced before, and every mapped
        # column flowing into the source — also one never synced (empty when the row was first synced).
        flowing_back = {
            name for f in m.fields if m.flows(f, side) and (name := f.dataverse if into is Side.DATAVERSE else f.fno)
        }
        columns = ((base or {}).keys() | flowing_back) - row.key.keys()
        now = fingerprint(current.record, proposed.keys() | columns) if current else None
        target_time = _time(current.modified) if current else None
        decision = resolve(m.conflict, side, proposed, now, base, columns, event.occurred_at, target_time)
        if decision.conflicts:
            winner = str(decision.winner) if decision.winner else "none"
            status = "open" if decision.park else "resolved"
            record_ = ConflictRecord(map=m.name, key=key, policy=str(m.conflict.policy), winner=winner,
                                     fields=decision.conflicts, source=str(side), event_id=event.event_id,
                                     status=status)  # fmt: skip
            await self.ledger.record_conflict(record_)
        if decision.park:
            return Outcome(m.name, "conflict", f"parked for a person: {', '.join(sorted(decision.conflicts))}")
        entry = entry or LedgerEntry(map=m.name, key=key)
        writes = 0
        # A value the target already holds is not written again (two lanes syncing one row — a line healing its order
        # while the order's own change applies — would otherwise write the same values twice).
        values = {
            c: v for c, v in row.values.items() if c in decision.write and (now is None or now.get(c) != proposed[c])
        }
        lookups = row.lookups if (current is None or decision.write or entry.deleted) else {}
        if current is None or values or lookups:
            tag = f"{TAG_PREFIX}{event.event_id}"
            written = await self._write_target(compiled, into, key, row, values, lookups, current, tag, record, depth)
            writes += 1
            self._record_write(entry, into, written, current, row, values)
        elif current is not None:
            # Found holding every value already, so not written: record it as synced at the version read, as a write
            # would have. Without the version, an older notification of this row (a post-image from before) would not
            # be stale and would carry its old values back to the source. Its own changes since flow back below.
            target = entry.side(into)
            target.values = {**target.values, **fingerprint(current.record, current.record)}
            target.row_id = target.row_id or current.row_id  # found, not written: still indexed
            if current.version and is_newer(current.version, target.version):
                target.version = current.version
        state = entry.side(side)
        state.values = {**state.values, **seen}
        state.version = source_version if source_version and is_newer(source_version, state.version) else state.version
        state.ahead = False  # the row as of that version is synced now (a write-back below may find it moved on)
        moved: Current | None = None
        if decision.back and current is not None:
            wrote, moved = await self._write_back(compiled, side, event, key, current, decision.back, entry)
            writes += wrote
        state.last_event = event.event_id
        if event.row_id and not (side is Side.FNO and event.row_id.startswith("{")):
            state.row_id = state.row_id or event.row_id
        entry.deleted = False
        await self.ledger.save(entry)
        if moved is not None and depth < MAX_HEAL_DEPTH:
            # The source row had moved on past this change: sync it as it is now, before its own (older-looking)
            # notifications arrive and find the ledger already past them.
            follow = self._synthetic(side, m, event.row_id, moved)
            writes += (await self._apply_change(compiled, side, follow, depth + 1, catch_up=True)).writes
        detail = (
            f"conflict on {', '.join(sorted(decision.conflicts))}, {decision.winner} won" if decision.conflicts else ""
        )
        return Outcome(m.name, "conflict" if decision.conflicts else "applied", detail, writes)

    async def _catch_up(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, entry: LedgerEntry, depth: int
    ) -> Outcome:
        """A stale notification of a row marked `ahead`: sync the row as it is now (the catch-up a write-back started
        and could not finish — throttled, or the host died — is owed, and this notification may be the last one)."""
        m = compiled.map
        state = entry.side(side)
        if side is Side.DATAVERSE:
            now = await self.dataverse.read(m, state.row_id or event.row_id)
        else:
            now = await self.fno.read(m, entry.key)
        if now is None:
            return Outcome(m.name, "skipped-stale", "the row is gone; its delete is on its way")
        follow = self._synthetic(side, m, state.row_id or event.row_id, now)
        return await self._apply_change(compiled, side, follow, depth + 1, catch_up=True)

    async def _read_target(self, m: TableMap, into: Side, row: TargetRow, entry: LedgerEntry | None) -> Current | None:
        if into is Side.FNO:
            return await self.fno.read(m, row.key)
        known = entry.dataverse.row_id if entry is not None else None
        return await self.dataverse.read(m, known or row.key)

    async def _write_target(
        self, compiled: CompiledMap, into: Side, key: dict[str, Any], row: TargetRow, values: dict[str, Any],
        lookups: Mapping[str, Any], current: Current | None, tag: str, record: Mapping[str, Any], depth: int,
    ) -> Written:  # fmt: skip
        m = compiled.map
        if_match = current.etag if current is not None else None
        if into is Side.FNO:
            return await self.fno.write(m, row.key, values, if_match=if_match, create=current is None)
        try:
            return await self.dataverse.write(
                m, row.key, values, lookups, if_match=if_match, create=current is None, tag=tag
            )
        except NotFound as exc:
            if not lookups or depth >= MAX_HEAL_DEPTH or not await self._heal_from_fno(compiled, record, row, depth):
                raise Retry(30.0, f"a referenced row does not exist in Dataverse: {exc.message}") from exc
            return await self.dataverse.write(
                m, row.key, values, lookups, if_match=if_match, create=current is None, tag=tag
            )

    def _record_write(
        self, entry: LedgerEntry, into: Side, written: Written, current: Current | None, row: TargetRow,
        values: Mapping[str, Any],
    ) -> None:  # fmt: skip
        target = entry.side(into)
        stored = written.record
        if stored is not None:
            target.values = {**target.values, **fingerprint(stored, stored)}
        else:
            before = fingerprint(current.record, current.record) if current else {}
            target.values = {**target.values, **before, **{c: normalize(v) for c, v in values.items()},
                             **{c: normalize(v) for c, v in row.key.items()}}  # fmt: skip
        target.version = written.version or target.version
        target.row_id = written.row_id or target.row_id

    async def _write_back(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, key: dict[str, Any], current: Current,
        columns: set[str], entry: LedgerEntry,
    ) -> tuple[int, Current | None]:  # fmt: skip
        """Copy the target's own changes (and the columns it won) back into the source, so both converge even
        though the target's own, older notification will now be skipped as stale. Returns the source row when it
        holds changes not synced yet."""
        m = compiled.map
        into = side.other
        back = transform(compiled, into, current.record, self.maps.maps, _Resolver())
        names = {}
        for column in columns:
            f = m.field_for(into, column)
            source_name = (f.fno if side is Side.FNO else f.dataverse) if f else None
            if f is not None and source_name and m.flows(f, side) and source_name in back.values:
                names[source_name] = back.values[source_name]
        if not names:
            return 0, None
        tag = f"{TAG_PREFIX}{event.event_id}:back"
        if side is Side.FNO:
            written = await self.fno.write(m, key, names, if_match="*", create=False)
        else:
            written = await self.dataverse.write(m, back.key, names, {}, if_match="*", create=False, tag=tag)
        state = entry.side(side)
        state.values = {**state.values, **{n: normalize(v) for n, v in names.items()}}
        entry.side(into).values = {**entry.side(into).values, **fingerprint(current.record, current.record)}
        # The write-back does not check the source's version (If-Match: *): the row may hold newer changes than the
        # one being applied (shuffled delivery). Its new version is ours only if it holds nothing we have not synced;
        # else the notifications of those changes would be skipped as stale and the two apps would stay apart.
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
            state.ahead = True
            return 1, now
        state.version = written.version or state.version
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
        if into is Side.FNO:
            if m.delete == "delete":  # F&O has no deactivation: `deactivate` leaves the row
                try:
                    await self.fno.delete(m, key)
                    writes = 1
                except NotFound:
                    pass
        else:
            dataverse_key: Any = entry.dataverse.row_id or {}
            if not dataverse_key:
                raise _validation(m, "the Dataverse row id is unknown")
            tag = f"{TAG_PREFIX}{event.event_id}"
            try:
                if m.delete == "delete":
                    await self.dataverse.client.delete(m.dataverse.entity_set, dataverse_key, tag=tag)
                else:
                    await self.dataverse.client.write(
                        m.dataverse.entity_set, dataverse_key, {"statecode": 1, "statuscode": 2}, if_match="*", tag=tag
                    )
                writes = 1
            except NotFound:
                pass
        entry.deleted = True
        entry.side(side).last_event = event.event_id
        await self.ledger.save(entry)
        return Outcome(m.name, "applied", f"{m.delete} on {into}", writes)


def _validation(m: TableMap, message: str) -> ConnectorError:
    from shared.connectors.errors import ValidationFailed

    return ValidationFailed(message, request=f"map {m.name}")


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
