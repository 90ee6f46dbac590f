"""Reference healing: a change whose lookups point at rows the bridge has not synced yet syncs those rows first
(a missing reference heals, it does not block). Also the transforms' `ReferenceResolver`, filled before the
(synchronous) transform runs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import JsonValue

from shared.events.model import ChangeEvent, Operation, event_id
from shared.events.values import decimal_value
from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap
from shared.maps.transform import CompiledMap, TargetRow, plain
from shared.sync.ports import LedgerPort, RowsPort
from shared.sync.rows import Current

MAX_HEAL_DEPTH = 3
ApplyOne = Callable[[CompiledMap, Side, ChangeEvent, int], Awaitable[object]]  # the service, one change at `depth`


class Resolver:
    """The transforms' `ReferenceResolver`: what `References.prepare` found."""

    def __init__(self) -> None:
        self.fno_keys: dict[tuple[str, str], dict[str, JsonValue]] = {}
        self.companies: dict[str, str] = {}

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        return self.fno_keys.get((map_name, dataverse_id.lower()))

    def company_code(self, dataverse_company_id: str) -> str | None:
        return self.companies.get(dataverse_company_id.lower())


def synthetic(side: Side, m: TableMap, row_id: str, current: Current) -> ChangeEvent:
    """A change made up from a row as it is now (a heal, or a source row that moved on past the change applied)."""
    entity = m.dataverse.table if side is Side.DATAVERSE else m.fno.entity
    return ChangeEvent(
        event_id=event_id("heal", side, m.name, row_id, current.version), source=side, entity=entity,
        operation=Operation.UPDATE, row_id=row_id, source_version=current.version,
        fields={n: decimal_value(v) if isinstance(v, Decimal) else v for n, v in current.record.items()},
        occurred_at=datetime.now(UTC),
    )  # fmt: skip


class References:
    def __init__(self, maps: MapSet, ledger: LedgerPort, dataverse: RowsPort, fno: RowsPort, apply: ApplyOne) -> None:
        self.maps = maps
        self.ledger = ledger
        self.dataverse = dataverse
        self.fno = fno
        self.apply = apply

    async def prepare(self, compiled: CompiledMap, side: Side, record: Mapping[str, Any], depth: int) -> Resolver:
        """Company codes and the F&O keys of referenced rows (Dataverse → F&O), syncing a referenced row first when
        the ledger does not know it yet."""
        m = compiled.map
        resolver = Resolver()
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
                    await self._from_dataverse(referenced, ref_id, depth)
                else:  # F&O masters the row (released products): sync F&O's row, found by the Dataverse row's key
                    await self._through_fno(referenced, ref_id, next(iter(resolver.companies.values()), None), depth)
                key = await self.ledger.key_for(f.lookup, Side.DATAVERSE, ref_id)
            if key is not None:
                resolver.fno_keys[(f.lookup, ref_id)] = key
        return resolver

    async def _from_dataverse(self, referenced: CompiledMap, row_id: str, depth: int) -> None:
        current = await self.dataverse.read(referenced.map, row_id)
        if current is None:
            return
        await self.apply(
            referenced, Side.DATAVERSE, synthetic(Side.DATAVERSE, referenced.map, row_id, current), depth + 1
        )

    async def _through_fno(self, referenced: CompiledMap, row_id: str, company: str | None, depth: int) -> None:
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
            await self.apply(referenced, Side.FNO, synthetic(Side.FNO, r, json.dumps(key, sort_keys=True), current),
                             depth + 1)  # fmt: skip

    async def from_fno(self, compiled: CompiledMap, record: Mapping[str, Any], row: TargetRow, depth: int) -> bool:
        """F&O → Dataverse and a lookup's row is not in Dataverse: sync the referenced rows from F&O first."""
        if depth >= MAX_HEAL_DEPTH:
            return False
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
                event = synthetic(Side.FNO, r, json.dumps(key, sort_keys=True), current)
                await self.apply(referenced, Side.FNO, event, depth + 1)
                healed = True
        return healed
