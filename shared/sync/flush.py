"""The batch's waiting writes, carried out together (one `$batch` per map and target, their ledger entries in
entity-group transactions); the follow-up a write-back starts (the source row moved on: caught up); and the guard
that turns what goes wrong with one change into that change's failure, never the batch's."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable

from shared.connectors.errors import ConcurrencyConflict, ConnectorError, NotFound
from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord, LedgerEntry
from shared.ledger.tables import LedgerConflict
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap
from shared.sync.batching import Batch, Change, Unit
from shared.sync.grouped import WriteGroups
from shared.sync.heal import MAX_HEAL_DEPTH, synthetic
from shared.sync.outcome import AlertRule, Outcome, PermanentFailure, Retry
from shared.sync.rows import Current, Written
from shared.sync.writes import Writes

MAX_DECISION_ROUNDS = 4
log = logging.getLogger("sync.apply")


class Flushing(Writes):
    """The batch's writes and the guards; one change's apply is `shared.sync.change.Changes`."""

    alert: AlertRule
    write_groups: WriteGroups  # the writes of batches applied at once, grouped per app and map

    # Provided by the subclasses: one change's apply (`shared.sync.change`) and the outcome log (`ApplyService._log`).
    async def _apply_map(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, batch: Batch | None = None,
        unit: Unit | None = None, read: bool = False,
    ) -> Outcome | None:  # fmt: skip
        raise NotImplementedError

    async def _apply_change(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, depth: int, read: bool, batch: Batch | None,
        unit: Unit | None, *, catch_up: bool = False,
    ) -> Outcome | None:  # fmt: skip
        raise NotImplementedError

    async def _catch_up(
        self, compiled: CompiledMap, side: Side, event: ChangeEvent, entry: LedgerEntry, depth: int
    ) -> Outcome | None:
        raise NotImplementedError

    def _log(self, event: ChangeEvent, outcome: Outcome) -> Outcome:
        raise NotImplementedError

    async def _guard(self, unit: Unit, m: TableMap, work: Awaitable[Outcome | None]) -> bool:
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

    async def _done(self, change: Change, writes: int, moved: Current | None) -> Outcome:
        c = change
        m = c.compiled.map
        if c.plan.conflict is not None:
            # Recorded once its write (and ledger entry) went through: a plan whose write met a 412 is decided
            # again, and its record would claim a winner for a write that never happened.
            try:
                await self.ledger.record_conflict(c.plan.conflict)
            except Exception as exc:
                # The ledger entry holds the conflict: the change, tried again, is stale and records it then.
                raise Retry(5.0, f"its conflict record was not saved: {exc}") from exc
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

    async def _flush(self, batch: Batch) -> None:
        """The waiting writes, one `$batch` per map and target; then their ledger entries, together. A row whose
        write or ledger entry met a concurrent change is read and decided again, alone."""
        pending, batch.pending, batch.keys = batch.pending, [], set()
        groups: dict[tuple[Side, str], list[tuple[Change, Unit]]] = {}
        for change, unit in pending:
            groups.setdefault((change.side.other, change.compiled.map.name), []).append((change, unit))
        settled: list[tuple[Change, Unit, LedgerEntry, int, Current | None]] = []
        again: list[tuple[Change, Unit]] = []
        for (into, _), members in groups.items():
            m = members[0][0].compiled.map
            try:
                answers = await self.write_groups.write_many(
                    self.rows(into), into, m, [self._row_write(c) for c, _ in members]
                )
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
        self, change: Change, unit: Unit, written: Written,
        into: list[tuple[Change, Unit, LedgerEntry, int, Current | None]],
    ) -> None:  # fmt: skip
        entry, writes, moved = await self._settle(change, written)
        into.append((change, unit, entry, writes, moved))


async def _raise(exc: Exception) -> None:
    raise exc
