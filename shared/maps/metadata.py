"""Reading both apps' published schema into the check's model (`shared.maps.check`): the adapters.

- Dataverse: `EntityDefinitions(LogicalName='…')?$expand=Attributes,Keys` per mapped table, and its choices'
  options through the picklist cast `…/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata
  ?$select=LogicalName&$expand=OptionSet` (Microsoft Learn, "Query table definitions using the Web API",
  https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api).
- F&O: `/data/$metadata`, the CSDL of every public entity (types, lengths, keys, enums).

The parsers are pure; `read_*` do the I/O with the bridge's own connectors (settings and credentials).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import ConnectorError, NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.wire import loads
from shared.maps.check import AppSchema, CheckProblem, Column, Entity, Kind, check_maps
from shared.maps.loader import MapSet
from shared.maps.model import Side

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
PICKLIST_CAST = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"


class MetadataUnavailable(RuntimeError):
    """An app's metadata could not be read (unreachable, unauthorized, not metadata): nothing can be concluded."""


# --- Dataverse ----------------------------------------------------------------------------------------------------

_DATAVERSE_KINDS = {
    "String": Kind.TEXT, "Memo": Kind.TEXT, "EntityName": Kind.TEXT,
    "Integer": Kind.INTEGER, "BigInt": Kind.INTEGER,
    "Decimal": Kind.DECIMAL, "Money": Kind.DECIMAL, "Double": Kind.DECIMAL,
    "Boolean": Kind.BOOLEAN,
    "Picklist": Kind.CHOICE, "State": Kind.CHOICE, "Status": Kind.CHOICE,
    "DateTime": Kind.DATETIME,
    "Lookup": Kind.LOOKUP, "Customer": Kind.LOOKUP, "Owner": Kind.LOOKUP,
    "Uniqueidentifier": Kind.GUID,
}  # fmt: skip


def dataverse_entity(definition: Mapping[str, Any], picklists: Mapping[str, Any] | None = None) -> Entity:
    """One `EntityDefinitions(...)?$expand=Attributes,Keys` answer (and its picklist cast) → an `Entity`."""
    options: dict[str, frozenset[str | int]] = {}
    for attribute in (picklists or {}).get("value") or []:
        values = ((attribute.get("OptionSet") or {}).get("Options")) or []
        options[str(attribute.get("LogicalName"))] = frozenset(int(o["Value"]) for o in values if "Value" in o)
    columns: dict[str, Column] = {}
    for attribute in definition.get("Attributes") or []:
        name = str(attribute.get("LogicalName") or "")
        type_name = (attribute.get("AttributeTypeName") or {}).get("Value")
        kind = _DATAVERSE_KINDS.get(str(attribute.get("AttributeType")), Kind.OTHER)
        if type_name == "MultiSelectPicklistType":
            kind = Kind.CHOICE
        if not name or attribute.get("AttributeOf"):  # name columns of lookups and the like: not writable
            continue
        known = options.get(name)
        if known is None and kind is Kind.CHOICE and isinstance(attribute.get("OptionSet"), dict):
            known = frozenset(int(o["Value"]) for o in attribute["OptionSet"].get("Options") or [] if "Value" in o)
        columns[name] = Column(
            name,
            kind,
            max_length=_int(attribute.get("MaxLength")) if kind is Kind.TEXT else None,
            options=known,
            targets=frozenset(str(t) for t in attribute.get("Targets") or []),
            precision=_int(attribute.get("Precision")) if kind is Kind.DECIMAL else None,
        )
    keys = tuple(frozenset(str(a) for a in key.get("KeyAttributes") or []) for key in definition.get("Keys") or [])
    return Entity(str(definition.get("LogicalName") or ""), columns, keys)


async def read_dataverse(client: DataverseClient, tables: Iterable[str]) -> AppSchema:
    async def one(table: str) -> Entity | None:
        path = f"EntityDefinitions(LogicalName='{table}')"
        try:
            definition = await client.transport.request(
                "GET", path, params={"$select": "LogicalName", "$expand": "Attributes,Keys"}
            )
        except NotFound:
            return None  # the table does not exist: the check says so
        try:
            picklists: Any = loads(
                (
                    await client.transport.request(
                        "GET",
                        f"{path}/Attributes/{PICKLIST_CAST}",
                        params={"$select": "LogicalName", "$expand": "OptionSet"},
                    )
                ).content
            )
        except NotFound:
            picklists = None
        return dataverse_entity(loads(definition.content), picklists)

    try:
        found = await asyncio.gather(*(one(t) for t in sorted(set(tables))))
    except (ConnectorError, ValueError) as exc:
        raise MetadataUnavailable(f"Dataverse metadata could not be read: {exc}") from exc
    if found and all(e is None for e in found):  # not one table: no definitions served here, not all tables gone
        raise MetadataUnavailable("Dataverse answered 404 for every table definition (EntityDefinitions)")
    return AppSchema(Side.DATAVERSE, {e.name: e for e in found if e is not None})


# --- F&O ----------------------------------------------------------------------------------------------------------

_EDM_KINDS = {
    "Edm.String": Kind.TEXT,
    "Edm.Int16": Kind.INTEGER, "Edm.Int32": Kind.INTEGER, "Edm.Int64": Kind.INTEGER, "Edm.Byte": Kind.INTEGER,
    "Edm.Decimal": Kind.DECIMAL, "Edm.Double": Kind.DECIMAL, "Edm.Single": Kind.DECIMAL,
    "Edm.Boolean": Kind.BOOLEAN,
    "Edm.DateTimeOffset": Kind.DATETIME, "Edm.Date": Kind.DATETIME,
    "Edm.Guid": Kind.GUID,
}  # fmt: skip


def fno_schema(csdl: bytes | str) -> AppSchema:
    """F&O's `$metadata` (CSDL, EDMX 4.0) → the entities by entity set, with their keys and enums."""
    try:
        root = ElementTree.fromstring(csdl)  # the bridge's own environment, over TLS with its credentials
    except ElementTree.ParseError as exc:
        raise MetadataUnavailable(f"F&O $metadata is not CSDL: {exc}") from None
    enums: dict[str, frozenset[str]] = {}
    types: dict[str, ElementTree.Element] = {}
    sets: dict[str, str] = {}
    for schema in root.iter(f"{EDM}Schema"):
        namespace = schema.get("Namespace", "")
        for enum in schema.findall(f"{EDM}EnumType"):
            members = frozenset(m.get("Name", "") for m in enum.findall(f"{EDM}Member"))
            enums[enum.get("Name", "")] = members
            enums[f"{namespace}.{enum.get('Name', '')}"] = members
        for entity_type in schema.findall(f"{EDM}EntityType"):
            types[f"{namespace}.{entity_type.get('Name', '')}"] = entity_type
        for container in schema.findall(f"{EDM}EntityContainer"):
            for entity_set in container.findall(f"{EDM}EntitySet"):
                sets[entity_set.get("Name", "")] = entity_set.get("EntityType", "")
    entities: dict[str, Entity] = {}
    for set_name, type_name in sets.items():
        found = types.get(type_name)
        if found is None:
            continue
        columns: dict[str, Column] = {}
        for prop in found.findall(f"{EDM}Property"):
            name, edm = prop.get("Name", ""), prop.get("Type", "")
            if edm in enums:
                short = edm.rsplit(".", 1)[-1]
                columns[name] = Column(name, Kind.CHOICE, options=frozenset(enums[edm]), enum=short)
                continue
            kind = _EDM_KINDS.get(edm, Kind.OTHER)
            columns[name] = Column(
                name,
                kind,
                max_length=_int(prop.get("MaxLength")) if kind is Kind.TEXT else None,
                precision=_int(prop.get("Precision")) if kind is Kind.DECIMAL else None,
            )
        key = frozenset(ref.get("Name", "") for ref in found.iterfind(f"{EDM}Key/{EDM}PropertyRef"))
        entities[set_name] = Entity(set_name, columns, (key,) if key else ())
    short_enums = {name: members for name, members in enums.items() if "." not in name}
    return AppSchema(Side.FNO, entities, short_enums)


async def read_fno(client: FnoClient) -> AppSchema:
    try:
        response = await client.transport.request("GET", "$metadata", headers={"Accept": "application/xml"})
    except ConnectorError as exc:
        raise MetadataUnavailable(f"F&O $metadata could not be read: {exc}") from exc
    return fno_schema(response.content)


# --- both, with the maps ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckReport:
    maps: list[str]
    problems: list[CheckProblem]

    @property
    def ok(self) -> bool:
        return not self.problems

    def failing(self) -> dict[str, list[CheckProblem]]:
        found: dict[str, list[CheckProblem]] = {}
        for p in self.problems:
            found.setdefault(p.map, []).append(p)
        return found

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "maps": self.maps,
            "problems": [{"map": p.map, "field": p.field, "reason": p.reason} for p in self.problems],
        }


async def check_live(maps: MapSet, dataverse: DataverseClient, fno: FnoClient) -> CheckReport:
    """Read both apps' metadata with the bridge's clients and check every map against it."""
    tables = {c.map.dataverse.table for c in maps.maps.values()}
    dataverse_schema, fno_schema_ = await asyncio.gather(read_dataverse(dataverse, tables), read_fno(fno))
    return CheckReport(list(maps.order), check_maps(maps, fno_schema_, dataverse_schema))


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "", "max", "Max") else None
    except (TypeError, ValueError):
        return None
