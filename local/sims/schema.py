"""The simulators' tables, defined by data: derived from the table maps (every map can be served) plus the
Dataverse system tables webhook registration writes to. No code per entity."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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
