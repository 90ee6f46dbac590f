"""Resolving a conflict the `manual` policy parked: the whole parked change is applied, with the operator's choice
for each conflicting column, to both apps and the ledger; the conflict records who decided what.

As apply would have done it with the conflict decided (`shared.sync.decide`): the source row (as it is now) through
the map's transform gives the target's values; a column the source changed since the last sync and the target did
not is written into the target; a column the target changed on its own is copied back into the source; each
conflicting column gets the chosen value on both sides (into the source through the map's own transform, so value
maps, types and text rules apply as in sync).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.connectors.dataverse import WriteMode
from shared.ledger.model import ConflictRecord, LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import LookupRef, transform
from shared.ops.actions import FieldChoice, InvalidAction, NotFoundError, Resolution
from shared.ops.store import OpsStore, conflict_json, now
from shared.sync.decide import changes_since, fingerprint, normalize
from shared.sync.heal import References
from shared.sync.rows import Current, DataverseRows, FnoRows, Written, dataverse_record

RESOLVE_TAG = "bridge:resolve:"
MAX_LEDGER_ROUNDS = 5
log = logging.getLogger("ops.resolve")


def plan(
    m: TableMap, source: Side, forward_values: Mapping[str, Any], into_now: Mapping[str, Any],
    base: Mapping[str, Any] | None, chosen: Mapping[str, Any], key_columns: set[str],
) -> tuple[set[str], set[str]]:  # fmt: skip
    """Pure: which target columns take the source's value (changed at the source only), and which of the target's
    columns go back into the source (changed in the target only); the conflicting ones (`chosen`) are neither."""
    into = source.other
    proposed = {c: normalize(v) for c, v in forward_values.items() if c not in key_columns}
    if base is None:  # never synced: the source's row as a whole
        return set(proposed) - set(chosen), set()
    names = ((f.dataverse if into is Side.DATAVERSE else f.fno) for f in m.fields if m.flows(f, source))
    flowing_back = {name for name in names if name}
    now = fingerprint(into_now, proposed.keys() | base.keys() | flowing_back)
    source_changed = changes_since(proposed, base)
    target_changed = {c for c in (base.keys() | flowing_back) if c in now and now[c] != base.get(c)}
    write = {c for c in source_changed - target_changed if now.get(c) != proposed[c]}
    back = {c for c in target_changed - source_changed if _source_name(m, into, c)}
    return write - set(chosen), back - set(chosen)


@dataclass(frozen=True)
class Settled:
    """A side as the resolution's write left it, for the ledger."""

    record: dict[str, Any] | None  # the row to record as synced; None: only the written values (recorded before)
    version: str | None
    row_id: str | None


def settled(written: Written, now_row: Current | None, before: Current, values: Mapping[str, Any]) -> Settled:
    """Pure: what the ledger records of a side the resolution wrote (`values`, over the row read `before`, on that
    row's ETag). The app's answer to the write is the row as the write left it. Without one, the row read again —
    unless it changed after the write (a person's edit in between): recorded as synced, that edit's notification
    would look like an echo and never reach the other app; then the row as the write must have left it (what was
    read, with what was written) at the write's version, and the edit flows as any other."""
    row_id = written.row_id or (now_row.row_id if now_row is not None else None) or before.row_id
    if written.record is not None:
        return Settled(written.record, written.version or (now_row.version if now_row else None), row_id)
    if now_row is None:
        return Settled(None, written.version or before.version, row_id)
    if written.version and now_row.version and now_row.version != written.version:
        return Settled({**before.record, **values}, written.version, row_id)
    return Settled(now_row.record, now_row.version or written.version, row_id)


def _source_name(m: TableMap, into: Side, column: str) -> str | None:
    f = m.field_for(into, column)
    if f is None or not m.flows(f, into.other):
        return None
    return f.fno if into is Side.DATAVERSE else f.dataverse


@dataclass
class ConflictActions:
    store: OpsStore
    maps: MapSet
    ledger: Ledger
    dataverse: DataverseRows
    fno: FnoRows
    references: References  # apply's: lookups through the ledger, a referenced row not synced yet healed first

    async def resolve(self, partition: str, row: str, resolution: Resolution, operator: str) -> dict[str, Any]:
        """Apply the parked change, each conflicting column as the operator chose, to both apps and the ledger.
        The chosen values are given in the target's columns (as the conflict shows them)."""
        entity = await self.store.conflict(partition, row)
        if entity is None:
            raise NotFoundError("no such conflict")
        record = ConflictRecord.model_validate_json(entity["Record"])
        if (entity.get("Status") or record.status) != "open":
            raise InvalidAction("the conflict is not open: only a conflict parked for a person can be resolved")
        missing = set(record.fields) - set(resolution.fields)
        unknown = set(resolution.fields) - set(record.fields)
        if missing or unknown:
            detail = "; ".join(
                part
                for part in (
                    f"choose a value for {', '.join(sorted(missing))}" if missing else "",
                    f"not in the conflict: {', '.join(sorted(unknown))}" if unknown else "",
                )
                if part
            )
            raise InvalidAction(detail, status=400)
        compiled = self.maps.maps.get(record.map)
        if compiled is None:
            raise InvalidAction(f"the map {record.map} no longer exists")
        m = compiled.map
        source = conflict_source(record)
        into = source.other
        chosen = {col: _chosen(record, source, col, choice) for col, choice in resolution.fields.items()}
        entry = await self.ledger.get(m.name, record.key) or LedgerEntry(map=m.name, key=record.key)
        into_row = await self._read(m, into, record.key, entry)
        source_row = await self._read(m, source, record.key, entry)
        if into_row is None or source_row is None:
            raise InvalidAction(f"the row no longer exists in {into if into_row is None else source}")
        # The parked change as apply would write it: the source row now, through the map.
        forward = transform(compiled, source, source_row.record, self.maps.maps,
                            await self.references.prepare(compiled, source, source_row.record, 0))  # fmt: skip
        base = entry.side(into).values if entry.etag is not None and not entry.deleted else None
        write, back = plan(m, source, forward.values, into_row.record, base, chosen, set(forward.key))
        into_values = {**{c: forward.values[c] for c in write}, **chosen}
        lookups = forward.lookups if into is Side.DATAVERSE and not forward.missing else {}
        # The chosen values and the target's own changes, in the source's names, through the map's transform.
        after = {**into_row.record, **into_values}
        backward = transform(
            compiled, into, after, self.maps.maps, await self.references.prepare(compiled, into, after, 0)
        )
        source_values: dict[str, Any] = {}
        for col in set(chosen) | back:
            name = _source_name(m, into, col) if col not in chosen else _any_source_name(m, into, col)
            if name and name in backward.values:
                source_values[name] = backward.values[name]
        # The ledger first, so that the two writes' own notifications, however soon they arrive, are echoes.
        expected = {
            into: {c: normalize(v) for c, v in into_values.items()},
            source: {n: normalize(v) for n, v in source_values.items()},
        }
        await self._record(m.name, record.key, expected, {})
        tag = f"{RESOLVE_TAG}{record.event_id}"
        written_sides: list[Side] = []
        try:
            into_written = await self._write(m, into, record.key, entry, into_values, lookups, into_row, tag)
            written_sides.append(into)
            source_written = await self._write(m, source, record.key, entry, source_values, {}, source_row, tag)
        except Exception:
            # A side not written must not stay recorded as holding the choice: its next change would be compared
            # against values it never had. A side written keeps it (its change flows on as any other).
            unwritten = {side: expected[side] for side in (into, source) if side not in written_sides}
            await self._restore(m.name, record.key, unwritten, entry)
            raise
        # Then both sides as the writes left them (versions, row ids, whatever the apps stored).
        now_rows: dict[Side, Settled] = {}
        sides = ((into, into_written, into_row, into_values), (source, source_written, source_row, source_values))
        for side, written, before, values in sides:
            again = None if written.record is not None else await self._read(m, side, record.key, entry)
            now_rows[side] = settled(written, again, before, values)
        await self._record(m.name, record.key, {}, now_rows)
        decided = {col: {"take": c.take, "value": normalize(chosen[col])} for col, c in resolution.fields.items()}
        props = {
            "Status": "resolved",
            "ResolvedBy": operator,
            "ResolvedAt": now().isoformat(),
            "Resolution": json.dumps(
                {"fields": decided, "written": {str(into): into_values, str(source): source_values}}, default=str
            ),
        }
        await self.store.mark_conflict(partition, row, **props)
        return conflict_json(entity | props)

    async def _record(
        self, map_name: str, key: dict[str, Any], values: dict[Side, dict[str, Any]],
        rows: dict[Side, Settled],
    ) -> None:  # fmt: skip
        """Merge into the ledger entry, again on a concurrent save (apply may be saving the same row)."""
        for _ in range(MAX_LEDGER_ROUNDS):
            entry = await self.ledger.get(map_name, key) or LedgerEntry(map=map_name, key=key)
            for side, written_values in values.items():
                entry.side(side).values = {**entry.side(side).values, **written_values}
            for side, left in rows.items():
                state = entry.side(side)
                if left.record is not None:
                    state.values = {**state.values, **fingerprint(left.record, left.record)}
                state.version = left.version or state.version
                state.row_id = state.row_id or left.row_id
            try:
                await self.ledger.save(entry)
                return
            except LedgerConflict:
                continue
        raise InvalidAction("the row kept changing in the ledger; try again")

    async def _restore(
        self, map_name: str, key: dict[str, Any], columns: dict[Side, dict[str, Any]], before: LedgerEntry
    ) -> None:
        """Put back, on each side, the values `columns` names as `before` held them (absent stays absent)."""
        for _ in range(MAX_LEDGER_ROUNDS):
            entry = await self.ledger.get(map_name, key) or LedgerEntry(map=map_name, key=key)
            for side, names in columns.items():
                old = before.side(side).values
                values = dict(entry.side(side).values)
                for name in names:
                    if name in old:
                        values[name] = old[name]
                    else:
                        values.pop(name, None)
                entry.side(side).values = values
            try:
                await self.ledger.save(entry)
                return
            except LedgerConflict:
                continue
        log.warning("conflict resolution on %s %s: the ledger could not be put back", map_name, key)

    async def _read(self, m: TableMap, side: Side, key: dict[str, Any], entry: LedgerEntry) -> Current | None:
        if side is Side.FNO:
            return await self.fno.read(m, key)
        return await self.dataverse.read(m, entry.dataverse.row_id or _dataverse_key(m, key))

    async def _write(
        self, m: TableMap, side: Side, key: dict[str, Any], entry: LedgerEntry, values: dict[str, Any],
        lookups: Mapping[str, LookupRef | None], current: Current, tag: str,
    ) -> Written:  # fmt: skip
        if not values and not lookups:
            return Written(current.etag, current.row_id, current.record)  # nothing written: the row as read
        if side is Side.FNO:
            return await self.fno.write(m, key, values, if_match=current.etag, create=False)
        row_id = current.row_id or entry.dataverse.row_id
        if row_id is None or lookups:
            return await self.dataverse.write(
                m, _dataverse_key(m, key), values, lookups, if_match=current.etag, create=False, tag=tag
            )
        result = await self.dataverse.client.write(
            m.dataverse.entity_set, row_id, values, mode=WriteMode.UPDATE, if_match=current.etag, tag=tag,
            return_row=True,
        )  # fmt: skip
        return Written(result.etag, row_id, dataverse_record(result.row) if result.row else None)


def _any_source_name(m: TableMap, into: Side, column: str) -> str | None:
    """A conflicting column's name in the source, whichever way the map lets it flow (it changed on both sides)."""
    f = m.field_for(into, column)
    if f is None:
        return None
    return f.fno if into is Side.DATAVERSE else f.dataverse


def _dataverse_key(m: TableMap, key: dict[str, Any]) -> dict[str, Any]:
    """The integration key (F&O names) in Dataverse's columns; the company as its code, as `DataverseRows` takes it."""
    out: dict[str, Any] = {}
    for name, value in key.items():
        if name == m.company_field(Side.FNO):
            out[str(m.company_field(Side.DATAVERSE))] = str(value).upper()
            continue
        f = m.field_for(Side.FNO, name)
        if f is not None and f.dataverse:
            out[f.dataverse] = value
    return out


def conflict_source(record: ConflictRecord) -> Side:
    """The side whose change met the conflict. An initial sync's (`source` "sync") compared both rows as they were:
    its fields are Dataverse columns holding each app's value (`fno`, `dataverse`), so it is resolved as a change
    from F&O into Dataverse would be — the chosen value into both, the rest through the map both ways."""
    return Side.FNO if record.source == "sync" else Side(record.source)


def _chosen(record: ConflictRecord, source: Side, column: str, choice: FieldChoice) -> Any:
    values = record.fields[column]
    if choice.take == "value":
        return choice.value
    if choice.take in values:  # an initial sync's conflict: each app's value under its name
        return values[choice.take]
    return values.get("source") if choice.take == str(source) else values.get("target")
