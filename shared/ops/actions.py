"""What an operator does about an error or a conflict: replay, dismiss, resolve. Every action records who did it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from shared.bus.publisher import ChangePublisher
from shared.connectors.dataverse import WriteMode
from shared.events.model import ChangeEvent
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import transform
from shared.ops.ids import replay_event_id
from shared.ops.store import Filter, OpsStore, conflict_json, error_json, now
from shared.sync.decide import fingerprint, normalize
from shared.sync.rows import Current, DataverseRows, FnoRows, Written, dataverse_record

RESOLVE_TAG = "bridge:resolve:"
MAX_LEDGER_ROUNDS = 5


class NotFoundError(LookupError):
    """No such error or conflict entry."""


class InvalidAction(ValueError):
    """The action does not fit the entry (already resolved, a field missing, …): a 409 or 400 with this message."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class FieldChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    take: Literal["fno", "dataverse", "value"]
    value: JsonValue = None


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: dict[str, FieldChoice]


@dataclass
class ErrorActions:
    store: OpsStore
    publisher: ChangePublisher

    async def replay(self, partition: str, row: str, operator: str) -> dict[str, Any]:
        """Queue the original change again; the outcome (resolved, or open with the new message) is written back
        by the apply observer (`shared.ops.observer`) in whichever process applies it."""
        entity = await self.store.error(partition, row)
        if entity is None or entity.get("Status") == "merged":
            raise NotFoundError("no such error")
        status = entity.get("Status") or "open"
        if status in ("resolved", "dismissed"):
            raise InvalidAction(f"the error is already {status}")
        record = ErrorRecord.model_validate_json(entity["Record"])
        attempt = int(entity.get("Replays") or 0) + 1
        event = ChangeEvent.model_validate(record.event)
        await self.publisher.publish([event.model_copy(update={"event_id": replay_event_id(event.event_id, attempt)})])
        await self.store.mark_error(
            partition, row, Status="replaying", Replays=attempt, ReplayedBy=operator, ReplayedAt=now().isoformat()
        )
        return error_json(entity | {"Status": "replaying", "Replays": attempt})

    async def replay_map(self, map_name: str, operator: str) -> list[dict[str, Any]]:
        entities = await self.store.error_entities(Filter(map=map_name, status="open"))
        return [await self.replay(e["PartitionKey"], e["RowKey"], operator) for e in entities]

    async def dismiss(self, partition: str, row: str, reason: str, operator: str) -> dict[str, Any]:
        if not reason.strip():
            raise InvalidAction("a reason is required to dismiss an error", status=400)
        entity = await self.store.error(partition, row)
        if entity is None or entity.get("Status") == "merged":
            raise NotFoundError("no such error")
        props = {"Status": "dismissed", "Note": reason.strip(), "ResolvedBy": operator, "ResolvedAt": now().isoformat()}
        await self.store.mark_error(partition, row, **props)
        return error_json(entity | props)


class _Companies:
    """The transform's `ReferenceResolver` for one row: its company code, looked up before."""

    def __init__(self, codes: dict[str, str]) -> None:
        self.codes = codes

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        return None

    def company_code(self, dataverse_company_id: str) -> str | None:
        return self.codes.get(dataverse_company_id.lower())


@dataclass
class ConflictActions:
    store: OpsStore
    maps: MapSet
    ledger: Ledger
    dataverse: DataverseRows
    fno: FnoRows

    async def resolve(self, partition: str, row: str, resolution: Resolution, operator: str) -> dict[str, Any]:
        """Write the operator's choice per field into both apps and the ledger; the conflict records who decided
        what. The values are given in the target's columns (as the conflict shows them); the other app gets them
        through the map's own transform, so value maps, types and text rules apply as in sync."""
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
        source = Side(record.source)
        into = source.other
        chosen = {col: _chosen(record, source, col, choice) for col, choice in resolution.fields.items()}
        entry = await self.ledger.get(m.name, record.key) or LedgerEntry(map=m.name, key=record.key)
        tag = f"{RESOLVE_TAG}{record.event_id}"
        into_row = await self._read(m.name, into, record.key, entry)
        source_row = await self._read(m.name, source, record.key, entry)
        if into_row is None or source_row is None:
            raise InvalidAction(f"the row no longer exists in {into if into_row is None else source}")
        # The same values in the source's own columns, as the map transforms them (value maps, types, text rules).
        after = {**into_row.record, **chosen}
        back = transform(compiled, into, after, self.maps.maps, await self._resolver(into, after))
        names: dict[str, Any] = {}
        for col in chosen:
            f = m.field_for(into, col)
            name = (f.fno if source is Side.FNO else f.dataverse) if f else None
            if name and name in back.values:
                names[name] = back.values[name]
        # The ledger first, so that the two writes' own notifications, however soon they arrive, are echoes.
        expected = {
            into: {c: normalize(v) for c, v in chosen.items()},
            source: {n: normalize(v) for n, v in names.items()},
        }
        await self._record(m.name, record.key, expected, {})
        into_written = await self._write(m.name, into, record.key, entry, chosen, into_row, tag)
        source_written = await self._write(m.name, source, record.key, entry, names, source_row, tag)
        # Then both sides as they now are (versions, row ids, whatever the apps stored).
        now_rows: dict[Side, tuple[Current, Written]] = {}
        for side, written, before in ((into, into_written, into_row), (source, source_written, source_row)):
            now_rows[side] = (await self._read(m.name, side, record.key, entry) or before, written)
        await self._record(m.name, record.key, {}, now_rows)
        decided = {col: {"take": c.take, "value": normalize(chosen[col])} for col, c in resolution.fields.items()}
        props = {
            "Status": "resolved",
            "ResolvedBy": operator,
            "ResolvedAt": now().isoformat(),
            "Resolution": json.dumps({"fields": decided, "written": {str(into): chosen, str(source): names}}),
        }
        await self.store.mark_conflict(partition, row, **props)
        return conflict_json(entity | props)

    async def _record(
        self, map_name: str, key: dict[str, Any], values: dict[Side, dict[str, Any]],
        rows: dict[Side, tuple[Current, Written]],
    ) -> None:  # fmt: skip
        """Merge into the ledger entry, again on a concurrent save (apply may be saving the same row)."""
        for _ in range(MAX_LEDGER_ROUNDS):
            entry = await self.ledger.get(map_name, key) or LedgerEntry(map=map_name, key=key)
            for side, written_values in values.items():
                entry.side(side).values = {**entry.side(side).values, **written_values}
            for side, (now_row, written) in rows.items():
                state = entry.side(side)
                state.values = {**state.values, **fingerprint(now_row.record, now_row.record)}
                state.version = now_row.version or written.version or state.version
                state.row_id = state.row_id or now_row.row_id
            try:
                await self.ledger.save(entry)
                return
            except LedgerConflict:
                continue
        raise InvalidAction("the row kept changing in the ledger; try again")

    async def _read(self, map_name: str, side: Side, key: dict[str, Any], entry: LedgerEntry) -> Current | None:
        m = self.maps.maps[map_name].map
        if side is Side.FNO:
            return await self.fno.read(m, key)
        return await self.dataverse.read(m, entry.dataverse.row_id or _dataverse_key(m, key))

    async def _write(
        self, map_name: str, side: Side, key: dict[str, Any], entry: LedgerEntry, values: dict[str, Any],
        current: Current, tag: str,
    ) -> Written:  # fmt: skip
        m = self.maps.maps[map_name].map
        if side is Side.FNO:
            return await self.fno.write(m, key, values, if_match=current.etag, create=False)
        row_id = current.row_id or entry.dataverse.row_id
        if row_id is None:
            return await self.dataverse.write(
                m, _dataverse_key(m, key), values, {}, if_match=current.etag, create=False, tag=tag
            )
        result = await self.dataverse.client.write(
            m.dataverse.entity_set, row_id, values, mode=WriteMode.UPDATE, if_match=current.etag, tag=tag,
            return_row=True,
        )  # fmt: skip
        return Written(result.etag, row_id, dataverse_record(result.row) if result.row else None)

    async def _resolver(self, side: Side, record: dict[str, Any]) -> _Companies:
        codes: dict[str, str] = {}
        if side is Side.DATAVERSE:
            for value in record.values():
                if isinstance(value, dict) and value.get("$type") == "lookup" and value.get("id"):
                    code = await self.dataverse.company_code(str(value["id"]))
                    if code:
                        codes[str(value["id"]).lower()] = code
        return _Companies(codes)


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


def _chosen(record: ConflictRecord, source: Side, column: str, choice: FieldChoice) -> Any:
    values = record.fields[column]
    if choice.take == "value":
        return choice.value
    return values.get("source") if choice.take == str(source) else values.get("target")
