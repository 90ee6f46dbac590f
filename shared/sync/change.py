"""One change through one map: held? echo? the source row (re-read when the event is partial), filter, transform
(missing references healed first), the pure plan, then its write — waiting in the batch, or at once when nested —
and a 412 or a moved ledger entry read and decided again."""

from __future__ import annotations

from typing import Any

from shared.connectors.errors import ConcurrencyConflict
from shared.events.model import ChangeEvent, Operation
from shared.ledger.model import LedgerEntry, key_text
from shared.ledger.tables import LedgerConflict
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, passes_filter, transform
from shared.sync.batching import Batch, Change, Unit
from shared.sync.decide import fingerprint
from shared.sync.deletes import apply_delete
from shared.sync.flush import MAX_DECISION_ROUNDS, Flushing, log
from shared.sync.heal import MAX_HEAL_DEPTH, synthetic
from shared.sync.outcome import Outcome, Retry, invalid
from shared.sync.plan import (
    TAG_PREFIX,
    can_assume,
    integration_key,
    known_before_reread,
    owed_conflict,
    plan_change,
    skip_reason,
)  # fmt: skip
from shared.sync.rows import row_slot


class _Unread:
    """No ledger entry read ahead for this row (as opposed to one read ahead and found absent: None)."""


_UNREAD = _Unread()


class Changes(Flushing):
    """One change's apply; the batch around it is `ApplyService`."""

    async def _apply_nested(self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int) -> Outcome | None:
        return await self._apply_map(compiled, side, event, depth)

    async def _apply_map(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, batch: Batch | None = None,
        unit: Unit | None = None, read: bool = False,
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
            return await apply_delete(self.ledger, self.dataverse, self.fno, m, side, event)
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
        self, m: TableMap, side: Side, event: ChangeEvent, batch: Batch | None = None
    ) -> tuple[dict[str, Any], str | None, str | None]:
        """The source row's values, version and ETag (when read). F&O updates carry only the changed fields, and a
        cut Dataverse payload carries none: those are re-read, so a late or re-scheduled event applies the row as
        it is now."""
        record: dict[str, Any] = dict(event.fields)
        if not self._partial(side, event):
            # An F&O event's own number (a data event's RowVersion — absent, or not of the ETag's sequence — or a
            # business event's ControlNumber) is never taken for the row's version: the ledger's F&O versions come
            # from ETags only, else a later update's re-read could be judged stale against it.
            return record, event.source_version if side is Side.DATAVERSE else None, None
        if side is Side.DATAVERSE:
            current = await self.dataverse.read(m, event.row_id)
        else:
            key = integration_key(m, record | event.keys) or await self.ledger.key_for(m.name, side, event.row_id)
            ahead = batch.reads.pop((m.name, row_slot(key)), None) if batch is not None and key else None
            current = ahead or (await self.fno.read(m, key) if key else None)
        if current is None:
            return record, event.source_version, None
        return current.record, current.version or event.source_version, current.etag

    async def _apply_change(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, read: bool, batch: Batch | None,
        unit: Unit | None, *, catch_up: bool = False,
    ) -> Outcome | None:  # fmt: skip
        """`catch_up`: the event is the source row as it is now, read because the ledger marked that side `ahead`
        (or a write-back just found it moved on); its version may equal the one recorded."""
        m = compiled.map
        into = side.other
        early: tuple[dict[str, Any], LedgerEntry | None] | None = None
        if side is Side.FNO and (self._partial(side, event) or event.operation is Operation.CREATE):
            # Redelivered, a create of a row synced already, or our own write seen back: known before any re-read,
            # no app request for it. (Its version cannot be compared: an F&O event's number is not the row
            # version its ETag carries.) A create whose values came whole (its enums decoded at ingest) too: a late
            # one must not carry its older values over a newer change already applied.
            if (early_key := integration_key(m, event.fields | event.keys)) is not None:
                ahead = batch.entries.pop((m.name, key_text(early_key)), _UNREAD) if batch is not None else _UNREAD
                known = ahead if not isinstance(ahead, _Unread) else await self.ledger.get(m.name, early_key)
                early = (early_key, known)
                if (skip := known_before_reread(known, m, event)) is not None:
                    if (owed := owed_conflict(known, event)) is not None:
                        await self.ledger.record_conflict(owed)
                    await self._learn_fno_row_id(known, event)
                    return Outcome(m.name, *skip)
        record, source_version, source_tag = await self._source_record(m, side, event, batch)
        if not passes_filter(compiled, side, record):
            return Outcome(m.name, "skipped-filtered", "the row does not pass the map's filter")
        resolver = await self.references.prepare(compiled, side, record, depth)
        row = transform(compiled, side, record, self.maps.maps, resolver)
        if row.errors:
            raise invalid(m, "; ".join(row.errors))
        if row.missing:
            names = ", ".join(f"{r.field} → {r.map}" for r in row.missing)
            raise Retry(10.0, f"referenced rows not synced yet: {names}")
        key = row.key if into is Side.FNO else integration_key(m, record | event.keys)
        if into is Side.FNO and key is not None:
            key = {k: (str(v).lower() if k == m.company_field(Side.FNO) else v) for k, v in key.items()}
        if not key:
            raise invalid(m, "the row's integration key is incomplete")
        if batch is not None and batch.holds(m.name, key):
            await self._flush(batch)  # the row's earlier write first: order per row
        entry = early[1] if early is not None and early[0] == key else await self.ledger.get(m.name, key)
        seen = fingerprint(record, m.readable(side))
        skip = skip_reason(entry, side, event, source_version, seen, catch_up=catch_up)
        if skip is not None:
            assert entry is not None
            if (owed := owed_conflict(entry, event)) is not None:
                await self.ledger.record_conflict(owed)  # redelivered: its record may have failed after the save
            if entry.side(side).ahead and not catch_up:
                if skip[0] == "skipped-stale" and depth < MAX_HEAL_DEPTH:
                    return await self._catch_up(compiled, side, event, entry, depth)
                if skip[0] == "skipped-echo":  # nothing of its own after all: no catch-up owed
                    entry.side(side).ahead = False
                    await self.ledger.save(entry)
            return Outcome(m.name, *skip)
        if entry is not None and entry.conflict is not None and entry.conflict.event_id != event.event_id:
            # An earlier change's conflict, which its record may have missed (it was re-scheduled to record it):
            # recorded now, before this change's entry replaces it (recording it again is a no-op).
            await self.ledger.record_conflict(entry.conflict)
        assume = not read and can_assume(entry, into)
        current = None if assume else await self._read_target(m, into, row, entry)
        plan = plan_change(m, side, event, row, key, entry, current, read=not assume)
        if plan.park:  # nothing is written: the conflict waits for a person
            if plan.conflict is not None:
                try:
                    await self.ledger.record_conflict(plan.conflict)
                except Exception as exc:  # tried again alone; recording it again is a no-op
                    raise Retry(5.0, f"its conflict record was not saved: {exc}") from exc
            return Outcome(m.name, "conflict", plan.detail)
        change = Change(compiled, side, event, depth, record, source_version, source_tag, row, key, entry, current,
                         plan)  # fmt: skip
        if plan.write is not None and batch is not None and unit is not None and depth == 0:
            batch.add(change, unit)
            return None
        written = await self._write(change) if plan.write is not None else None
        entry, writes, moved = await self._settle(change, written)
        await self.ledger.save(entry)
        return await self._done(change, writes, moved)

    async def _learn_fno_row_id(self, entry: LedgerEntry | None, event: ChangeEvent) -> None:
        """The F&O row's virtual-table id, learnt from the echo of the create that made it (a row the bridge created
        from Dataverse): a later F&O delete names the row by that id alone, and without it was dropped as "a row the
        bridge never synced". One ledger save per row, once; a conflict with a save meanwhile leaves it for later."""
        row_id = event.row_id
        if entry is None or entry.fno.row_id or not row_id or row_id.startswith("{"):
            return
        entry.fno.row_id = row_id
        try:
            await self.ledger.save(entry)
        except LedgerConflict:
            pass

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
