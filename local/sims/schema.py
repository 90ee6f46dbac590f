"""The simulators' tables, defined by data: derived from the table maps (every map can be served) plus the
Dataverse system tables webhook registration writes to. No code per entity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap, TypeConversion


class ColumnType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    CHOICE = "choice"
    DATETIME = "datetime"
    DATE = "date"
    LOOKUP = "lookup"
    GUID = "guid"


@dataclass
class Column:
    name: str
    type: ColumnType = ColumnType.TEXT
    target: str | None = None  # lookups: the referenced table's entity set
    # The metadata both apps publish ($metadata, EntityDefinitions), derived from the maps and seeds:
    max_length: int | None = None  # text columns: the longest value the app accepts
    options: tuple[str | int, ...] = ()  # Dataverse choice values / F&O enum symbols the app defines
    enum: str | None = None  # F&O: the enum type's name (e.g. NoYes); Dataverse: the option set's name


@dataclass
class Table:
    name: str  # Dataverse logical name / F&O entity name
    entity_set: str
    key: list[str]  # the alternate key (Dataverse) or the entity key (F&O)
    columns: dict[str, Column] = field(default_factory=dict)
    primary_id: str | None = None  # Dataverse: <table>id
    virtual_table: str | None = None  # F&O: its data events' mserp_ table
    system: bool = False  # registration tables: no webhooks about them

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)


def _dataverse_type(m: TableMap, name: str, maps: MapSet) -> Column:
    if m.company is not None and name == m.company.dataverse:
        return Column(name, ColumnType.LOOKUP, m.company.table_entity_set)
    f = m.field_for(Side.DATAVERSE, name)
    if f is None:
        return Column(name, ColumnType.CHOICE if name.endswith("code") else ColumnType.TEXT)
    if f.lookup and f.lookup in maps.maps:
        return Column(name, ColumnType.LOOKUP, maps.maps[f.lookup].map.dataverse.entity_set)
    if f.type is TypeConversion.NOYES_BOOLEAN:
        return Column(name, ColumnType.BOOLEAN)
    if f.type is TypeConversion.DECIMAL:
        return Column(name, ColumnType.DECIMAL)
    if f.type is TypeConversion.DATETIME:
        return Column(name, ColumnType.DATETIME)
    if f.type is TypeConversion.DATE:
        return Column(name, ColumnType.DATE)
    if f.type is TypeConversion.ENUM_CHOICE or (isinstance(f.default, int) and name.endswith("code")):
        return Column(name, ColumnType.CHOICE)
    if f.value_map and all(isinstance(v, int) and not isinstance(v, bool) for v in f.value_map.values()):
        return Column(name, ColumnType.CHOICE)
    return Column(name, ColumnType.TEXT)


def _fno_type(m: TableMap, name: str) -> Column:
    f = m.field_for(Side.FNO, name)
    if f is not None and f.type is TypeConversion.DECIMAL:
        return Column(name, ColumnType.DECIMAL)
    return Column(name, ColumnType.TEXT)


SYSTEM_TABLES = [
    Table(
        "serviceendpoint", "serviceendpoints", ["name"],
        {n: Column(n) for n in ["name", "contract", "url", "authtype", "authvalue", "messageformat", "messagecharset",
                                 "description", "namespaceformat", "userclaim", "connectionmode"]},
        "serviceendpointid", system=True,
    ),
    Table(
        "sdkmessage", "sdkmessages", ["name"], {"name": Column("name")}, "sdkmessageid", system=True,
    ),
    Table(
        "sdkmessagefilter", "sdkmessagefilters", ["primaryobjecttypecode", "sdkmessageid"],
        {"primaryobjecttypecode": Column("primaryobjecttypecode"),
         "sdkmessageid": Column("sdkmessageid", ColumnType.LOOKUP, "sdkmessages")},
        "sdkmessagefilterid", system=True,
    ),
    Table(
        "sdkmessageprocessingstep", "sdkmessageprocessingsteps", ["name"],
        {n: Column(n) for n in ["name", "stage", "mode", "rank", "filteringattributes", "supporteddeployment",
                                 "asyncautodelete", "description", "statecode", "statuscode"]}
        | {"eventhandler_serviceendpoint":
               Column("eventhandler_serviceendpoint", ColumnType.LOOKUP, "serviceendpoints"),
           "sdkmessageid": Column("sdkmessageid", ColumnType.LOOKUP, "sdkmessages"),
           "sdkmessagefilterid": Column("sdkmessagefilterid", ColumnType.LOOKUP, "sdkmessagefilters")},
        "sdkmessageprocessingstepid", system=True,
    ),
    Table(
        "sdkmessageprocessingstepimage", "sdkmessageprocessingstepimages", ["name"],
        {n: Column(n) for n in ["name", "entityalias", "imagetype", "messagepropertyname", "attributes"]}
        | {"sdkmessageprocessingstepid": Column("sdkmessageprocessingstepid", ColumnType.LOOKUP,
                                                "sdkmessageprocessingsteps")},
        "sdkmessageprocessingstepimageid", system=True,
    ),
]  # fmt: skip

DATAVERSE_SYSTEM_COLUMNS = ("createdon", "modifiedon", "versionnumber", "statecode", "statuscode")


def dataverse_tables(maps: MapSet) -> list[Table]:
    tables: dict[str, Table] = {t.entity_set: t for t in SYSTEM_TABLES}
    for compiled in maps.maps.values():
        m = compiled.map
        names = sorted(m.readable(Side.DATAVERSE))
        table = tables.setdefault(
            m.dataverse.entity_set,
            Table(
                m.dataverse.table, m.dataverse.entity_set, list(m.dataverse.key), primary_id=f"{m.dataverse.table}id"
            ),
        )
        for name in names:
            table.columns.setdefault(name, _dataverse_type(m, name, maps))
    for table in tables.values():
        if not table.system:
            for name in ("statecode", "statuscode"):
                table.columns.setdefault(name, Column(name, ColumnType.CHOICE))
            table.columns.setdefault("name", Column("name"))
    return list(tables.values())


def fno_tables(maps: MapSet) -> list[Table]:
    tables: dict[str, Table] = {}
    for compiled in maps.maps.values():
        m = compiled.map
        table = tables.setdefault(
            m.fno.entity,
            Table(m.fno.entity, m.fno.entity, list(m.fno.key), virtual_table=m.fno.virtual_table),
        )
        table.virtual_table = table.virtual_table or m.fno.virtual_table
        for name in sorted(m.readable(Side.FNO)):
            table.columns.setdefault(name, _fno_type(m, name))
    return list(tables.values())


class SchemaChangeError(ValueError):
    """A customization the simulator cannot make (unknown column, bad type…): the admin API answers 400."""


_COLUMN_SPEC = {"name", "type", "max_length", "options", "enum", "target"}


def _column_from(spec: Mapping[str, Any], base: Column | None = None) -> Column:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise SchemaChangeError(f"a column needs a name: {spec!r}")
    unknown = set(spec) - _COLUMN_SPEC
    if unknown:
        raise SchemaChangeError(f"unknown column properties {sorted(unknown)} (known: {sorted(_COLUMN_SPEC)})")
    column = replace(base) if base is not None else Column(spec["name"])
    if "type" in spec:
        try:
            column.type = ColumnType(spec["type"])
        except ValueError:
            raise SchemaChangeError(
                f"unknown column type {spec['type']!r} (known: {', '.join(t.value for t in ColumnType)})"
            ) from None
    if "max_length" in spec:
        length = spec["max_length"]
        if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
            raise SchemaChangeError(f"max_length must be a positive integer or null, not {length!r}")
        column.max_length = length
    if "options" in spec:
        options = spec["options"]
        if not isinstance(options, list) or not all(isinstance(o, str | int) for o in options):
            raise SchemaChangeError(f"options must be a list of values, not {options!r}")
        column.options = tuple(options)
    for name in ("enum", "target"):
        if name in spec:
            if spec[name] is not None and not isinstance(spec[name], str):
                raise SchemaChangeError(f"{name} must be a string or null")
            setattr(column, name, spec[name])
    if column.type is ColumnType.LOOKUP and not column.target:
        raise SchemaChangeError(f"the lookup column {column.name!r} needs a target entity set")
    return column


def customize(table: Table, change: Mapping[str, Any]) -> None:
    """Change a table's live schema as a customizer would in the app: `add` columns, `remove` them, `alter` their
    type, length or options. Checked whole before anything changes, so a bad request changes nothing."""
    unknown = set(change) - {"entity_set", "add", "remove", "alter"}
    if unknown:
        raise SchemaChangeError(f"unknown properties {sorted(unknown)} (give add, remove, alter)")
    adds = [_column_from(spec) for spec in change.get("add") or []]
    removes = change.get("remove") or []
    if not isinstance(removes, list) or not all(isinstance(n, str) for n in removes):
        raise SchemaChangeError("remove must be a list of column names")
    keys = set(table.key) | ({table.primary_id} if table.primary_id else set())
    for name in removes:
        if name not in table.columns:
            raise SchemaChangeError(f"{table.name} has no column {name!r} to remove")
        if name in keys:
            raise SchemaChangeError(f"{name!r} is part of {table.name}'s key and cannot be removed")
    for column in adds:
        if column.name in table.columns or column.name in keys:
            raise SchemaChangeError(f"{table.name} already has a column {column.name!r}")
    alters = []
    for spec in change.get("alter") or []:
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if not isinstance(name, str) or name not in table.columns:
            raise SchemaChangeError(f"{table.name} has no column {name!r} to alter")
        alters.append(_column_from(spec, table.columns[name]))
    for name in removes:
        del table.columns[name]
    for column in [*adds, *alters]:
        table.columns[column.name] = column


def describe(table: Table) -> dict[str, Any]:
    """A table's live schema as the admin API shows it."""
    return {
        "entity_set": table.entity_set,
        "name": table.name,
        "key": list(table.key),
        "columns": [
            {k: v for k, v in asdict(c).items() if v not in (None, ())} | {"type": c.type.value}
            for c in table.columns.values()
        ],
    }
