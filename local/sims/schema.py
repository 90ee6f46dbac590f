"""The simulators' tables, defined by data: derived from the table maps (every map can be served) plus the
Dataverse system tables webhook registration writes to. No code per entity."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from shared.maps.loader import MapSet
from shared.maps.model import Side, TableMap, TypeConversion

T = TypeVar("T")


class ColumnType(StrEnum):
    TEXT = "text"
    MEMO = "memo"  # multiple lines of text
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
    labels: dict[str | int, str] = field(default_factory=dict)  # an option's label, where known
    enum: str | None = None  # F&O: the enum type's name (e.g. NoYes); Dataverse: the option set's name
    # Dataverse lookups: the single-valued navigation properties `@odata.bind` names, when not the column's own
    # name — a multi-table (Customer) lookup has one per target table (`customerid_account`, `customerid_contact`).
    navigation: dict[str, str] = field(default_factory=dict)  # navigation property → target entity set
    # Virtual tables (F&O's `mserp_*` in Dataverse): the F&O field a column stands for, and each option's F&O symbol
    # (`OptionMetadata.ExternalValue`) — `local.sims.virtual_tables`.
    external_name: str | None = None
    external_values: dict[str | int, str] = field(default_factory=dict)

    def navigation_properties(self) -> dict[str, str]:
        """Navigation property → target entity set (lookups only)."""
        if self.type is not ColumnType.LOOKUP:
            return {}
        return self.navigation or {self.name: self.target or ""}

    @property
    def lookup_property(self) -> str:
        """What the Web API calls a lookup's value: `_<name>_value` (in rows, `$select`, `$filter`, keys)."""
        return f"_{self.name}_value" if self.type is ColumnType.LOOKUP else self.name


@dataclass
class Table:
    name: str  # Dataverse logical name / F&O entity name
    entity_set: str
    key: list[str]  # the alternate key (Dataverse) or the entity key (F&O)
    columns: dict[str, Column] = field(default_factory=dict)
    primary_id: str | None = None  # Dataverse: <table>id
    primary_name: str | None = None  # Dataverse: the column that names a row (PrimaryNameAttribute)
    virtual_table: str | None = None  # F&O: its data events' mserp_ table
    system: bool = False  # registration tables: no webhooks about them

    def column(self, name: str) -> Column | None:
        return self.columns.get(name)


def per_table(cache: dict[int, tuple[Table, tuple[Column, ...], T]], table: Table, build: Callable[[Table], T]) -> T:
    """`build(table)`, worked out again only when the table's columns are no longer the same objects (a
    customization replaces them); the table kept beside its id in `cache`, so the id is never another table's."""
    columns = tuple(table.columns.values())
    hit = cache.get(id(table))
    if hit is None or hit[0] is not table or hit[1] != columns:
        hit = cache[id(table)] = (table, columns, build(table))
    return hit[2]


def _dataverse_type(m: TableMap, name: str, maps: MapSet) -> Column:
    if m.company is not None and name == m.company.dataverse:
        return Column(name, ColumnType.LOOKUP, m.company.table_entity_set)
    f = m.field_for(Side.DATAVERSE, name)
    if f is None:
        return Column(name, ColumnType.CHOICE if name.endswith("code") else ColumnType.TEXT)
    if f.lookup and f.lookup in maps.maps:
        target = maps.maps[f.lookup].map.dataverse.entity_set
        if name in CUSTOMER_LOOKUPS:
            return customer_lookup(name, target)
        return Column(name, ColumnType.LOOKUP, target)
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


# Standard multi-table "Customer" lookups: bound through `<name>_account` / `<name>_contact`, never `<name>`.
# Microsoft Learn, "Associate table rows on create" and "Multi-table lookups".
CUSTOMER_LOOKUPS = frozenset({"customerid", "parentcustomerid"})


def customer_lookup(name: str, target: str = "accounts") -> Column:
    return Column(
        name, ColumnType.LOOKUP, target, navigation={f"{name}_account": "accounts", f"{name}_contact": "contacts"}
    )


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
        | {"eventhandler":  # a multi-table lookup: a service endpoint or a plug-in type
               Column("eventhandler", ColumnType.LOOKUP, "serviceendpoints",
                      navigation={"eventhandler_serviceendpoint": "serviceendpoints",
                                  "eventhandler_plugintype": "plugintypes"}),
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
DEFAULT_TEXT_LENGTH = 100  # a new single line of text column's maximum length in Dataverse
OVERLAY = Path(__file__).parent / "seed" / "dataverse-schema.json"
_STATE: dict[str | int, str] = {0: "Active", 1: "Inactive"}
_STATUS: dict[str | int, str] = {1: "Active", 2: "Inactive"}


def _derive_metadata(column: Column, m: TableMap) -> None:
    """Lengths from the maps' text rules, option values (and F&O symbols as labels) from value maps and defaults."""
    f = m.field_for(Side.DATAVERSE, column.name)
    if f is None:
        return
    if column.type is ColumnType.TEXT and f.text is not None and f.text.max_length:
        column.max_length = max(column.max_length or 0, f.text.max_length)
    if column.type is ColumnType.CHOICE:
        values: dict[str | int, str] = {}
        for symbol, value in (f.value_map or {}).items():
            if isinstance(value, int) and not isinstance(value, bool):
                values[value] = symbol
        if isinstance(f.default, int) and not isinstance(f.default, bool):
            values.setdefault(f.default, str(f.default))
        column.options = tuple(dict.fromkeys([*column.options, *values]))
        column.labels = values | column.labels


def _apply_overlay(table: Table, overlay: Mapping[str, Any]) -> None:
    entry = overlay.get(table.name)
    if not isinstance(entry, Mapping):
        return
    table.primary_name = entry.get("primary_name") or table.primary_name
    for name, spec in (entry.get("columns") or {}).items():
        base = table.columns.get(name)
        column = _column_from({"name": name, **spec}, base)
        if "labels" in spec and base is not None:  # documented labels win over the maps' symbols
            column.labels = base.labels | column.labels
        table.columns[name] = column


def load_overlay(path: Path = OVERLAY) -> dict[str, Any]:
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}


def dataverse_tables(maps: MapSet, overlay: Mapping[str, Any] | None = None) -> list[Table]:
    overlay = load_overlay() if overlay is None else overlay
    tables: dict[str, Table] = {t.entity_set: deepcopy(t) for t in SYSTEM_TABLES}
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
            column = table.columns.setdefault(name, _dataverse_type(m, name, maps))
            _derive_metadata(column, m)
    for table in tables.values():
        if not table.system:
            table.columns.setdefault("statecode", Column("statecode", ColumnType.CHOICE, options=(0, 1), labels=_STATE))
            table.columns.setdefault(
                "statuscode", Column("statuscode", ColumnType.CHOICE, options=(1, 2), labels=_STATUS)
            )
            table.columns.setdefault("name", Column("name"))
        _apply_overlay(table, overlay)
        table.primary_name = table.primary_name or ("name" if "name" in table.columns else None)
        for column in table.columns.values():
            if column.type in (ColumnType.TEXT, ColumnType.MEMO) and column.max_length is None and not table.system:
                column.max_length = DEFAULT_TEXT_LENGTH
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


_COLUMN_SPEC = {"name", "type", "max_length", "options", "labels", "enum", "target"}  # navigation: not customizable


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
    if "labels" in spec:
        labels = spec["labels"]
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            raise SchemaChangeError(f"labels must map option values to text, not {labels!r}")
        column.labels = {_option(k): v for k, v in labels.items()}
        column.options = tuple(dict.fromkeys([*column.options, *column.labels]))
    for name in ("enum", "target"):
        if name in spec:
            if spec[name] is not None and not isinstance(spec[name], str):
                raise SchemaChangeError(f"{name} must be a string or null")
            setattr(column, name, spec[name])
    if column.type is ColumnType.LOOKUP and not column.target:
        raise SchemaChangeError(f"the lookup column {column.name!r} needs a target entity set")
    return column


def _option(value: Any) -> str | int:
    """Option values arrive as JSON object keys: "3" is the choice 3."""
    return int(value) if isinstance(value, str) and value.lstrip("-").isdigit() else value  # type: ignore[no-any-return]


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
            {k: v for k, v in asdict(c).items() if v not in (None, (), {})} | {"type": c.type.value}
            for c in table.columns.values()
        ],
    }
