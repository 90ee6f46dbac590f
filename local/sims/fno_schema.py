"""What the F&O simulator publishes about its entities, as F&O's `$metadata` does: string lengths, enums (with
their symbols), decimal precision, key fields — and the rules that follow from it: an enum field accepts only
its defined symbols, and data events carry enums as the option-set values of the virtual tables.

Derived from the maps (decimal, NoYes and enum_choice fields, date/times) plus an overlay, `seed/fno-schema.json`
(or the file `FNO_SIM_SCHEMA` names, to simulate a customized environment).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from local.sims.schema import Column, ColumnType, Table
from shared.maps.loader import MapSet
from shared.maps.model import TypeConversion

NAMESPACE = "Microsoft.Dynamics.DataEntities"
OPTION_BASE = 200_000_000  # virtual tables number an enum's options from here, in the enum's order
DECIMAL_PRECISION, DECIMAL_SCALE = 32, 6  # F&O's real type: numeric(32,6)
OVERLAY = Path(__file__).parent / "seed" / "fno-schema.json"
# Columns the overlay names a type for, as CSDL spells it.
_EDM_TYPES = {
    "Edm.String": ColumnType.TEXT,
    "Edm.Int32": ColumnType.NUMBER,
    "Edm.Decimal": ColumnType.DECIMAL,
    "Edm.DateTimeOffset": ColumnType.DATETIME,
    "Edm.Date": ColumnType.DATE,
    "Edm.Guid": ColumnType.GUID,
}


def load_overlay(path: Path | None = None) -> dict[str, Any]:
    chosen = path or Path(os.environ.get("FNO_SIM_SCHEMA") or OVERLAY)
    overlay: dict[str, Any] = json.loads(chosen.read_text(encoding="utf-8"))
    return overlay


def describe(tables: list[Table], maps: MapSet, overlay: dict[str, Any] | None = None) -> list[Table]:
    """Fill the F&O tables' columns with what `$metadata` publishes (in place; returns the tables)."""
    overlay = overlay if overlay is not None else load_overlay()
    enums: dict[str, list[str]] = {name: list(symbols) for name, symbols in overlay.get("enums", {}).items()}
    by_name = {t.name: t for t in tables}
    for compiled in maps.maps.values():
        m = compiled.map
        table = by_name.get(m.fno.entity)
        if table is None:
            continue
        for f in m.fields:
            column = table.columns.get(f.fno or "")
            if column is None:
                continue
            if f.type is TypeConversion.NOYES_BOOLEAN:
                _enum(column, "NoYes", enums)
            elif f.type is TypeConversion.ENUM_CHOICE and f.value_map:
                _enum(column, column.enum or f"{f.fno}Enum", enums, [str(k) for k in f.value_map])
            elif f.type is TypeConversion.DECIMAL:
                column.type = ColumnType.DECIMAL
            elif f.type in (TypeConversion.DATETIME, TypeConversion.DATE):
                column.type = ColumnType.DATETIME  # F&O dates travel as Edm.DateTimeOffset too
    for entity, fields in overlay.get("entities", {}).items():
        table = by_name.get(entity)
        if table is None:
            continue
        for name, spec in fields.items():
            column = table.columns.get(name)
            if column is None or not isinstance(spec, dict):
                continue
            if "max_length" in spec:
                column.max_length = int(spec["max_length"])
            if "enum" in spec:
                _enum(column, str(spec["enum"]), enums)
            if "type" in spec:
                column.type = _EDM_TYPES[str(spec["type"])]
    return tables


def entity_type_name(table: Table, overlay: dict[str, Any]) -> str:
    spec = overlay.get("entities", {}).get(table.entity_set, {})
    return str(spec.get("_type") or table.name)


def _enum(column: Column, name: str, enums: dict[str, list[str]], symbols: list[str] | None = None) -> None:
    known = enums.setdefault(name, symbols or [])
    column.type = ColumnType.CHOICE
    column.enum = name
    column.options = tuple(known)


# --- rules that follow from the metadata ---------------------------------------------------------------------------


def undefined_symbol(table: Table, name: str, value: Any) -> str | None:
    """The Infolog text F&O answers when an enum field is given a value its enum does not define; None if fine."""
    column = table.columns.get(name)
    if column is None or column.type is not ColumnType.CHOICE or not column.enum or value is None:
        return None
    if isinstance(value, str) and value in column.options:
        return None
    return (
        f"Write failed for table row of type '{table.name}'. Infolog: Error: The value '{value}' is not "
        f"defined for the enum {column.enum} of field {name}."
    )


def wrong_type(table: Table, name: str, value: Any) -> str | None:
    """OData's answer when a number field is given something else (ODataLib's message); None if fine."""
    column = table.columns.get(name)
    if column is None or value is None or column.type not in (ColumnType.NUMBER, ColumnType.DECIMAL):
        return None
    if not isinstance(value, bool) and _fits(column.type, value):
        return None
    edm = "Edm.Int32" if column.type is ColumnType.NUMBER else "Edm.Decimal"
    return f"Cannot convert a primitive value to the expected type '{edm}'. See the inner exception for more details."


def _fits(kind: ColumnType, value: Any) -> bool:
    if kind is ColumnType.NUMBER:
        return isinstance(value, int) or (isinstance(value, Decimal | float) and value == int(value))
    return isinstance(value, int | float | Decimal)


def option_set_value(column: Column | None, value: Any) -> Any:
    """A value as a virtual table's event carries it: an enum symbol as an OptionSetValue numbered from 200,000,000,
    a date-time as `/Date(ms)/` (the context is WCF JSON, as Dataverse's own webhook bodies)."""
    if column is not None and column.type is ColumnType.DATETIME and isinstance(value, str) and "T" in value:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return f"/Date({int(moment.timestamp() * 1000)})/"
    if column is None or column.type is not ColumnType.CHOICE or not isinstance(value, str):
        return value
    if value not in column.options:
        return value
    contracts = "http://schemas.microsoft.com/xrm/2011/Contracts"
    return {"__type": f"OptionSetValue:{contracts}", "Value": OPTION_BASE + column.options.index(value)}


# --- $metadata ----------------------------------------------------------------------------------------------------


def csdl(tables: list[Table], overlay: dict[str, Any] | None = None) -> str:
    """The CSDL (EDMX 4.0) F&O serves at `/data/$metadata`: an EntityType per entity (key, typed properties), the
    EnumTypes they use, and an EntityContainer naming each entity set."""
    overlay = overlay if overlay is not None else load_overlay()
    enums: dict[str, tuple[str | int, ...]] = {}
    types, sets = [], []
    for table in sorted(tables, key=lambda t: t.entity_set):
        type_name = entity_type_name(table, overlay)
        lines = [f"      <EntityType Name={quoteattr(type_name)}>", "        <Key>"]
        lines += [f"          <PropertyRef Name={quoteattr(k)} />" for k in table.key]
        lines.append("        </Key>")
        for column in table.columns.values():
            lines.append(f"        {_property(column, table.key)}")
            if column.type is ColumnType.CHOICE and column.enum:
                enums[column.enum] = column.options
        lines.append("      </EntityType>")
        types += lines
        qualified = quoteattr(f"{NAMESPACE}.{type_name}")
        sets.append(f"        <EntitySet Name={quoteattr(table.entity_set)} EntityType={qualified} />")
    for name, symbols in sorted(enums.items()):
        types.append(f"      <EnumType Name={quoteattr(name)}>")
        types += [f'        <Member Name={quoteattr(str(s))} Value="{i}" />' for i, s in enumerate(symbols)]
        types.append("      </EnumType>")
    return "\n".join(
        [
            '<?xml version="1.0" encoding="utf-8"?>',
            '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
            "  <edmx:DataServices>",
            f'    <Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
            *types,
            '      <EntityContainer Name="Resources">',
            *sets,
            "      </EntityContainer>",
            "    </Schema>",
            "  </edmx:DataServices>",
            "</edmx:Edmx>",
            "",
        ]
    )


def _property(column: Column, key: list[str]) -> str:
    name = quoteattr(column.name)
    nullable = ' Nullable="false"' if column.name in key else ""
    if column.type is ColumnType.CHOICE and column.enum:
        return f'<Property Name={name} Type="{NAMESPACE}.{column.enum}"{nullable} />'
    if column.type is ColumnType.DECIMAL:
        return f'<Property Name={name} Type="Edm.Decimal" Precision="{DECIMAL_PRECISION}" Scale="{DECIMAL_SCALE}" />'
    if column.type is ColumnType.NUMBER:
        return f'<Property Name={name} Type="Edm.Int32" />'
    if column.type in (ColumnType.DATETIME, ColumnType.DATE):
        return f'<Property Name={name} Type="Edm.DateTimeOffset" />'
    if column.type is ColumnType.GUID:
        return f'<Property Name={name} Type="Edm.Guid" />'
    length = f' MaxLength="{column.max_length}"' if column.max_length else ""
    return f'<Property Name={name} Type="Edm.String"{nullable}{length} />'
