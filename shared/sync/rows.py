"""Rows of a map on one side, through that side's connector: keys and lookups in the app's terms, rows back as
canonical records (what the transforms read). The adapters apply writes through."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.connectors.batch import MAX_OPERATIONS, BatchOperation, BatchResult
from shared.connectors.dataverse import Bind, DataverseClient, WriteMode, entity_id, lookup_property
from shared.connectors.errors import ConcurrencyConflict, ConnectorError, NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.wire import etag_version, literal
from shared.maps.model import Side, TableMap
from shared.maps.transform import LookupRef


@dataclass
class Current:
    record: dict[str, Any]  # canonical
    etag: str | None
    row_id: str | None
    modified: str | None = None

    @property
    def version(self) -> str | None:
        return etag_version(self.etag)


@dataclass
class Written:
    etag: str | None
    row_id: str | None
    record: dict[str, Any] | None  # the row as stored, when the app returned it

    @property
    def version(self) -> str | None:
        return etag_version(self.etag)


@dataclass
class RowWrite:
    """One conditional write of a row, for `write_many`."""

    key: Mapping[str, Any]
    values: Mapping[str, Any]
    lookups: Mapping[str, LookupRef | None]
    if_match: str | None
    create: bool
    tag: str


def _chunks(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + MAX_OPERATIONS] for i in range(0, len(items), MAX_OPERATIONS)]


def _created_meanwhile(exc: ConnectorError) -> ConnectorError:
    """F&O answers a duplicate create with a 400 Infolog ("… already exists"), not a 412: for apply it is one."""
    if "already exists" in str(exc):
        return ConcurrencyConflict("the row was created meanwhile", status=412, request=exc.request)
    return exc


def dataverse_record(values: Mapping[str, Any]) -> dict[str, Any]:
    """A Web API row → canonical: `_x_value` lookups become `x` lookups; system and annotation columns dropped."""
    record: dict[str, Any] = {}
    for name, value in values.items():
        if "@" in name:
            continue
        if name.startswith("_") and name.endswith("_value"):
            column = name[1:-6]
            record[column] = None if value is None else {"$type": "lookup", "id": str(value).lower()}
        else:
            record[name] = value
    return record


class DataverseRows:
    def __init__(self, client: DataverseClient, maps: Mapping[str, TableMap]) -> None:
        self.client = client
        self.maps = maps
        self._companies: dict[str, str] = {}
        self._company_codes: dict[str, str] = {}

    async def company_id(self, code: str) -> str:
        code = code.upper()
        if code not in self._companies:
            row = await self.client.get("cdm_companies", {"cdm_companycode": code}, select=["cdm_companyid"])
            self._companies[code] = str(row.values["cdm_companyid"]).lower()
            self._company_codes[self._companies[code]] = code
        return self._companies[code]

    async def company_code(self, company_id: str) -> str | None:
        company_id = company_id.lower()
        if company_id not in self._company_codes:
            try:
                row = await self.client.get("cdm_companies", company_id, select=["cdm_companycode"])
            except NotFound:
                return None
            self._company_codes[company_id] = str(row.values["cdm_companycode"]).upper()
            self._companies[self._company_codes[company_id]] = company_id
        return self._company_codes[company_id]

    async def key(self, m: TableMap, key: Mapping[str, Any]) -> dict[str, Any]:
        """The alternate key as the Web API names it: the company code becomes the company row's id, under the
        lookup's property name `_<lookup>_value` — Microsoft Learn, "Use an alternate key to reference a record":
        `accounts(_msdyn_company_value=<guid>,accountnumber='A1')`, never `msdyn_company=<guid>`."""
        company = m.company_field(Side.DATAVERSE)
        out: dict[str, Any] = {}
        for name, value in key.items():
            if name == company:
                out[lookup_property(name)] = uuid.UUID(await self.company_id(str(value))) if value else value
            else:
                out[name] = value
        return out

    async def bind(self, ref: LookupRef | None) -> Bind | None:
        if ref is None:
            return None
        referenced = self.maps.get(ref.map)
        return ref.entity_set, await self.key(referenced, ref.key) if referenced else dict(ref.key)

    async def read(self, m: TableMap, key: Mapping[str, Any] | str) -> Current | None:
        try:
            where = key if isinstance(key, str) else await self.key(m, key)
            row = await self.client.get(m.dataverse.entity_set, where)
        except NotFound:
            return None
        record = dataverse_record(row.values)
        row_id = str(row.values.get(f"{m.dataverse.table}id") or "") or None
        return Current(record, row.etag, row_id, str(row.values.get("modifiedon") or "") or None)

    async def write(
        self,
        m: TableMap,
        key: Mapping[str, Any],
        values: Mapping[str, Any],
        lookups: Mapping[str, LookupRef | None],
        *,
        if_match: str | None,
        create: bool,
        tag: str,
    ) -> Written:
        binds = {name: await self.bind(ref) for name, ref in lookups.items()}
        mode = WriteMode.CREATE if create else WriteMode.UPSERT
        result = await self.client.write(
            m.dataverse.entity_set, await self.key(m, key), values, lookups=binds, mode=mode, if_match=if_match,
            tag=tag, return_row=True,
        )  # fmt: skip
        record = dataverse_record(result.row) if result.row else None
        row_id = entity_id(result.entity_id) or (str(result.row.get(f"{m.dataverse.table}id")) if result.row else None)
        return Written(result.etag, row_id, record)

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        """Several rows in one `$batch` (up to 1,000 operations each), one change set per row and
        `odata.continue-on-error`, so one bad row fails alone (Microsoft Learn, "Execute batch operations using the
        Web API"). A single row is one plain request."""
        if len(writes) == 1:
            w = writes[0]
            try:
                return [await self.write(m, w.key, w.values, w.lookups, if_match=w.if_match, create=w.create,
                                         tag=w.tag)]  # fmt: skip
            except ConnectorError as exc:
                return [exc]
        ops = []
        for w in writes:
            binds = {name: await self.bind(ref) for name, ref in w.lookups.items()}
            mode = WriteMode.CREATE if w.create else WriteMode.UPSERT
            ops.append(self.client.write_operation(
                m.dataverse.entity_set, await self.key(m, w.key), w.values, lookups=binds, mode=mode,
                if_match=w.if_match, tag=w.tag, return_row=True,
            ))  # fmt: skip
        out: list[Written | ConnectorError] = []
        for chunk in _chunks(ops):
            results = await self.client.batch(chunk, atomic=False, continue_on_error=True)
            out += [self._written(m, r) for r in results]
        return out

    def _written(self, m: TableMap, result: BatchResult) -> Written | ConnectorError:
        if result.error is not None or not result.ok:
            return result.error or ConnectorError(f"no answer for {result.operation.path}", status=result.status)
        row = result.body if isinstance(result.body, dict) else None
        record = dataverse_record(row) if row else None
        etag = result.etag or (row or {}).get("@odata.etag")
        row_id = entity_id(result.headers.get("odata-entityid")) or (
            str(row.get(f"{m.dataverse.table}id")) if row and row.get(f"{m.dataverse.table}id") else None
        )
        return Written(etag, row_id, record)

    async def delete(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        where = key if isinstance(key, str) else await self.key(m, key)
        await self.client.delete(m.dataverse.entity_set, where, tag=tag)

    async def deactivate(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        where = key if isinstance(key, str) else await self.key(m, key)
        await self.client.write(m.dataverse.entity_set, where, {"statecode": 1, "statuscode": 2}, if_match="*", tag=tag)


class FnoRows:
    def __init__(self, client: FnoClient) -> None:
        self.client = client

    async def company_code(self, company_id: str) -> str | None:
        return None  # F&O rows name their company by code already

    async def read(self, m: TableMap, key: Mapping[str, Any] | str) -> Current | None:
        try:
            row = await self.client.get(m.fno.entity, key)
        except NotFound:
            return None
        return Current(dict(row.values), row.etag, None)

    async def write(
        self, m: TableMap, key: Mapping[str, Any], values: Mapping[str, Any],
        lookups: Mapping[str, LookupRef | None] | None = None, *, if_match: str | None, create: bool, tag: str = "",
    ) -> Written:  # fmt: skip
        """Create (POST: "already exists" is our 412) or update under `If-Match`. F&O writes carry no tag."""
        if create:
            try:
                result = await self.client.create(m.fno.entity, key, values)
            except ConnectorError as exc:
                raise _created_meanwhile(exc) from exc
            return Written(result.etag, None, _row(result.row))
        result = await self.client.update(m.fno.entity, key, values, if_match=if_match or "*")
        return Written(result.etag, None, None)

    async def read_many(self, m: TableMap, keys: Sequence[Mapping[str, Any]]) -> dict[str, Current]:
        """Several rows by key in few requests: one `$filter` of `(k1 eq … and k2 eq …) or …` per 25 rows (so the
        URL stays short). Keyed by `row_slot(key)`; a row not there is simply absent."""
        found: dict[str, Current] = {}
        for start in range(0, len(keys), 25):
            part = keys[start : start + 25]
            where = " or ".join(
                "(" + " and ".join(f"{name} eq {literal(value)}" for name, value in key.items()) + ")" for key in part
            )
            async for row in self.client.list(m.fno.entity, filter=where):
                slot = row_slot({name: row.values.get(name) for name in m.fno.key})
                found[slot] = Current(dict(row.values), row.etag, None)
        return found

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        """Several rows in one F&O `$batch`, one change set per row, so one bad row fails alone."""
        if len(writes) == 1:
            w = writes[0]
            try:
                return [await self.write(m, w.key, w.values, if_match=w.if_match, create=w.create)]
            except ConnectorError as exc:
                return [exc]
        ops: list[BatchOperation] = [
            self.client.create_operation(m.fno.entity, w.key, w.values) if w.create
            else self.client.update_operation(m.fno.entity, w.key, w.values, w.if_match or "*")
            for w in writes
        ]  # fmt: skip
        out: list[Written | ConnectorError] = []
        for chunk in _chunks(ops):
            for result in await self.client.batch(chunk, atomic=False, continue_on_error=True):
                if result.error is not None or not result.ok:
                    error = result.error or ConnectorError(
                        f"no answer for {result.operation.path}", status=result.status
                    )
                    out.append(_created_meanwhile(error) if result.operation.method == "POST" else error)
                else:
                    row = result.body if isinstance(result.body, dict) else None
                    out.append(Written(result.etag or (row or {}).get("@odata.etag"), None, _row(row)))
        return out

    async def delete(self, m: TableMap, key: Mapping[str, Any] | str, tag: str = "") -> None:
        await self.client.delete(m.fno.entity, key)

    async def deactivate(self, m: TableMap, key: Mapping[str, Any] | str, tag: str = "") -> None:
        return None  # F&O has no deactivation: `deactivate` leaves the row


def row_slot(key: Mapping[str, Any]) -> str:
    """A row's key as one comparable text (F&O compares key values without regard to case)."""
    return "|".join(f"{name}={str(value).lower()}" for name, value in sorted(key.items()))


def _row(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return {k: v for k, v in row.items() if not k.startswith("@odata.")} if row else None
