"""Rows of a map on one side, through that side's connector: keys and lookups in the app's terms, rows back as
canonical records (what the transforms read). The adapters apply writes through."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.connectors.dataverse import Bind, DataverseClient, WriteMode, entity_id, lookup_property
from shared.connectors.errors import ConcurrencyConflict, NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.wire import etag_version
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

    async def delete(self, m: TableMap, key: Mapping[str, Any], tag: str) -> None:
        await self.client.delete(m.dataverse.entity_set, await self.key(m, key), tag=tag)


class FnoRows:
    def __init__(self, client: FnoClient) -> None:
        self.client = client

    async def read(self, m: TableMap, key: Mapping[str, Any]) -> Current | None:
        try:
            row = await self.client.get(m.fno.entity, key)
        except NotFound:
            return None
        return Current(dict(row.values), row.etag, None)

    async def write(
        self, m: TableMap, key: Mapping[str, Any], values: Mapping[str, Any], *, if_match: str | None, create: bool
    ) -> Written:
        if create:
            try:
                result = await self.client.create(m.fno.entity, key, values)
            except Exception as exc:  # F&O answers a duplicate create with a 400 Infolog, not a 412
                if "already exists" in str(exc):
                    raise ConcurrencyConflict("the row was created meanwhile", status=412) from exc
                raise
            return Written(result.etag, None, dict(result.row) if result.row else None)
        result = await self.client.update(m.fno.entity, key, values, if_match=if_match or "*")
        return Written(result.etag, None, None)

    async def delete(self, m: TableMap, key: Mapping[str, Any]) -> None:
        await self.client.delete(m.fno.entity, key)
