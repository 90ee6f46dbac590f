"""F&O enums on virtual tables: option-set values back to the enum symbols OData uses. Pure.

A virtual table (`mserp_*`) models an F&O enum as a Picklist backed by a global option set; the option's External
name (`OptionMetadata.ExternalValue`) is the F&O symbol, and it is what to match on: the integer values are not
stable between environments (extensible enums have no stable ids either). Microsoft Learn, "Entity modeling"
(finance and operations virtual tables), https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/power-platform/entity-modeling
and "OptionMetadata ComplexType" (`ExternalValue`: "The name of a value as it exists in an external source").

The options are read with the documented Web API query ("Retrieve table definitions by name or MetadataId",
"Query table definitions using the Web API"), expanding both option-set navigation properties so a global and a
local option set are both found (`picklist_query`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import JsonValue

PICKLIST_CAST = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
TableOptions = Mapping[str, Mapping[int, str | None]]  # attribute → option value → its External name (None: none)


def picklist_query(table: str) -> tuple[str, dict[str, str]]:
    """The path and query of every picklist attribute of `table` with its options, local or global."""
    return (
        f"EntityDefinitions(LogicalName='{table}')/Attributes/{PICKLIST_CAST}",
        {"$select": "LogicalName", "$expand": "OptionSet($select=Options),GlobalOptionSet($select=Options)"},
    )


def table_options(document: Any) -> dict[str, dict[int, str | None]]:
    """The answer to `picklist_query` → attribute → value → External name. A global option set wins (the local one
    is null then); an option without an External name maps to None (known, but not an F&O symbol). Whatever is not
    in the documented shape is left out: a value not found is a value not decoded, never a wrong symbol."""
    found: dict[str, dict[int, str | None]] = {}
    attributes = document.get("value") if isinstance(document, dict) else None
    for attribute in attributes if isinstance(attributes, list) else []:
        if not isinstance(attribute, dict) or not isinstance(name := attribute.get("LogicalName"), str):
            continue
        option_set = attribute.get("GlobalOptionSet") or attribute.get("OptionSet")
        options = option_set.get("Options") if isinstance(option_set, dict) else None
        values: dict[int, str | None] = {}
        for option in options if isinstance(options, list) else []:
            value = option.get("Value") if isinstance(option, dict) else None
            if isinstance(value, int) and not isinstance(value, bool):
                external = option.get("ExternalValue")
                values[value] = external if isinstance(external, str) and external else None
        found[name.lower()] = values
    return found


@dataclass
class EnumSymbols:
    """What is known of the virtual tables' options (a snapshot), and what was asked for but not known — an unknown
    table, attribute or value — so the caller can read the metadata again and decode once more."""

    tables: Mapping[str, TableOptions] = field(default_factory=dict)
    generation: int = 0  # which reading of the metadata this is (`shared.ingest.enums`)
    missed: set[str] = field(default_factory=set)  # virtual tables with something unknown

    def symbol(self, table: str, attribute: str, value: int) -> str | None:
        options = self.tables.get(table, {}).get(attribute)
        if options is None or value not in options:
            self.missed.add(table)
            return None
        return options[value]  # None: an option with no External name, known not to be decodable


def decode_choices(
    table: str, fields: Mapping[str, JsonValue], symbols: EnumSymbols | None
) -> dict[str, JsonValue] | None:
    """A virtual table's fields with every choice as its F&O symbol, or None when one cannot be decoded (no
    metadata, an unknown value, no External name, a multi-select): then the row must be re-read through OData."""
    decoded: dict[str, JsonValue] = {}
    for name, value in fields.items():
        if isinstance(value, dict) and value.get("$type") == "choices":
            return None  # F&O enums are single-valued: a multi-select is no F&O enum to decode
        if isinstance(value, dict) and value.get("$type") == "choice":
            number = value.get("value")
            if symbols is None or not isinstance(number, int) or isinstance(number, bool):
                return None
            symbol = symbols.symbol(table, name.lower(), number)
            if symbol is None:
                return None
            decoded[name] = symbol
        else:
            decoded[name] = value
    return decoded
