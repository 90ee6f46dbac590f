"""Carrying out one planned change: its write into the target (a missing Dataverse reference healed first), the
ledger entry once it is done, and the write-back of the target's own changes into the source. The base of the
executor (`shared.sync.service.ApplyService`); the batch's writes are `shared.sync.flush`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.connectors.errors import ConcurrencyConflict, NotFound
from shared.events.model import ChangeEvent
from shared.ledger.model import LedgerEntry
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, TargetRow, transform
from shared.sync.batching import Change
from shared.sync.decide import fingerprint, normalize
from shared.sync.heal import References, Resolver
from shared.sync.outcome import Retry
from shared.sync.plan import TAG_PREFIX, settle, source_etag
from shared.sync.ports import LedgerPort, RowsPort
from shared.sync.rows import Current, RowWrite, Written


class Writes:
    """One change's write, ledger entry and write-back, through the ports."""

    maps: MapSet
    ledger: LedgerPort
    dataverse: RowsPort
    fno: RowsPort
    references: References

    def rows(self, side: Side) -> RowsPort:
        return self.dataverse if side is Side.DATAVERSE else self.fno

    async def _read_target(self, m: TableMap, into: Side, row: TargetRow, entry: LedgerEntry | None) -> Current | None:
        if into is Side.FNO:
            return await self.fno.read(m, row.key)
        known = entry.dataverse.row_id if entry is not None else None
        return await self.dataverse.read(m, known or row.key)

    def _row_write(self, change: Change) -> RowWrite:
        w = change.plan.write
        assert w is not None
        return RowWrite(change.row.key, w.values, w.lookups, w.if_match, w.create, w.tag)

    async def _write(self, change: Change) -> Written:
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

    async def _settle(self, change: Change, written: Written | None) -> tuple[LedgerEntry, int, Current | None]:
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
