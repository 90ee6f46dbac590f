"""The F&O entities as Dataverse knows them: virtual tables (`mserp_<entity>`), whose definitions the Dataverse
simulator publishes under `EntityDefinitions` (their rows live in F&O: no data is served for them here).

Modelled as Microsoft Learn, "Entity modeling" (finance and operations virtual tables) describes:
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/power-platform/entity-modeling
- a field becomes a column `mserp_<field, lower case>`; a Real a Decimal; an Int an Integer; a string a String;
  a date/time a DateTime;
- an enum becomes a Picklist backed by a global option set; the option's External name (`ExternalValue`) is the
  enum's symbol — what to match on — and its label is the enum value's label. The integer values are not stable
  between environments: here they are 200,000,000 + the symbol's index, as the F&O simulator's data events number
  them (`fno_schema.option_set_value`), so the two simulators agree as one environment would.
The global option sets' names (`mserp_<enum, lower case>`) are this simulator's choice (not documented).
"""

from __future__ import annotations

import re

from local.sims.fno_schema import OPTION_BASE
from local.sims.schema import Column, ColumnType, Table

# The labels F&O shows for the seeded enums where they are not the symbol split into words (the symbol is what
# OData and `ExternalValue` carry; the label is for people, and differs).
LABELS: dict[str, dict[str, str]] = {
    "SalesStatus": {"Active": "Open order", "ConfirmedOrder": "Confirmed"},
    "InventTransType": {"InventLossProfit": "Profit/loss", "InventTransfer": "Transfer order"},
    "InventNonConformanceType": {"Cust": "Customer", "Vend": "Vendor", "PmfProdCoBy": "Co-product/by-product"},
}
_KINDS = {
    ColumnType.CHOICE: ColumnType.CHOICE,
    ColumnType.DECIMAL: ColumnType.DECIMAL,
    ColumnType.NUMBER: ColumnType.NUMBER,
    ColumnType.DATETIME: ColumnType.DATETIME,
    ColumnType.DATE: ColumnType.DATETIME,
    ColumnType.GUID: ColumnType.GUID,
}


def label(enum: str, symbol: str) -> str:
    """An enum value's label: F&O's where known, else the symbol in words (`LegalEntity` → `Legal entity`)."""
    known = LABELS.get(enum, {}).get(symbol)
    if known:
        return known
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", symbol) or [symbol]
    return " ".join([words[0], *(w.lower() for w in words[1:])])


def entity_set_name(table: str) -> str:
    return table[:-1] + "ies" if table.endswith("y") else table + "s"


def virtual_table(entity: Table) -> Table:
    """One F&O entity (as `fno_schema.describe` left it) → its virtual table's definition."""
    name = str(entity.virtual_table)
    columns: dict[str, Column] = {}
    for field in entity.columns.values():
        column = Column(f"mserp_{field.name.lower()}", _KINDS.get(field.type, ColumnType.TEXT))
        column.external_name = field.name
        if column.type is ColumnType.TEXT:
            column.max_length = field.max_length
        if field.type is ColumnType.CHOICE and field.enum:
            symbols = [str(s) for s in field.options]
            values = [OPTION_BASE + i for i in range(len(symbols))]
            column.enum = f"mserp_{field.enum.lower()}"  # a global option set
            column.options = tuple(values)
            column.labels = {v: label(field.enum, s) for v, s in zip(values, symbols, strict=True)}
            column.external_values = dict(zip(values, symbols, strict=True))
        columns[column.name] = column
    primary = f"mserp_{entity.key[-1].lower()}" if entity.key else None
    return Table(name, entity_set_name(name), [], columns, primary_id=f"{name}id", primary_name=primary)
