"""Check the maps against the apps' own schema, before they run: every problem at once, with map, field and reason.

Pure: a small model of what both apps publish (F&O `$metadata`, Dataverse `EntityDefinitions`) and one function
over it. Reading the metadata is an adapter (`shared.maps.metadata`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.maps.expressions import Binary, Call, Field, Literal, Node, Unary
from shared.maps.loader import MapSet
from shared.maps.model import FieldMap, Side, TableMap, TypeConversion
from shared.maps.transform import CompiledMap


class Kind(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    CHOICE = "choice"  # a Dataverse choice (option set) or an F&O enum
    DATETIME = "datetime"
    LOOKUP = "lookup"
    GUID = "guid"
    OTHER = "other"


NUMBERS = (Kind.INTEGER, Kind.DECIMAL)
# The longest text each kind needs when written into a string column (sign, digits, separators).
_TEXT_NEEDED = {Kind.INTEGER: 11, Kind.DATETIME: 25, Kind.GUID: 36}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    max_length: int | None = None  # text: the longest value the column accepts; None: not published
    options: frozenset[str | int] | None = None  # choice: the values (Dataverse) or symbols (F&O) defined
    enum: str | None = None  # F&O: the enum type's name
    targets: frozenset[str] = frozenset()  # lookups: the tables it may reference (logical names)
    precision: int | None = None  # decimals: total digits


@dataclass(frozen=True)
class Entity:
    name: str
    columns: Mapping[str, Column]
    keys: tuple[frozenset[str], ...] = ()  # Dataverse: alternate keys; F&O: the entity key


@dataclass(frozen=True)
class AppSchema:
    side: Side
    entities: Mapping[str, Entity]  # Dataverse: by logical name; F&O: by entity set
    enums: Mapping[str, frozenset[str]] = field(default_factory=dict)  # F&O enum types → symbols


@dataclass(frozen=True)
class CheckProblem:
    map: str
    field: str  # what the reader looks for: "fno CustomersV3.OrganizationName", "filters.fno", "dataverse.key"…
    reason: str

    def __str__(self) -> str:
        return f"{self.map}: {self.field}: {self.reason}"


def check_maps(maps: MapSet, fno: AppSchema, dataverse: AppSchema, names: set[str] | None = None) -> list[CheckProblem]:
    """Every problem of the maps (all of them, or those `names`) against both apps' schema."""
    synced = {c.map.dataverse.table for c in maps.maps.values()}
    out: list[CheckProblem] = []
    for name in maps.order:
        if names is None or name in names:
            out += _Check(maps.maps[name], maps, fno, dataverse, synced).run()
    return out


def by_map(problems: list[CheckProblem]) -> dict[str, list[CheckProblem]]:
    found: dict[str, list[CheckProblem]] = {}
    for p in problems:
        found.setdefault(p.map, []).append(p)
    return found


class _Check:
    def __init__(
        self, compiled: CompiledMap, maps: MapSet, fno: AppSchema, dataverse: AppSchema, synced: set[str]
    ) -> None:
        self.compiled = compiled
        self.m: TableMap = compiled.map
        self.maps = maps
        self.schemas = {Side.FNO: fno, Side.DATAVERSE: dataverse}
        self.synced = synced
        self.problems: list[CheckProblem] = []
        self.entities: dict[Side, Entity | None] = {}

    def problem(self, where: str, reason: str) -> None:
        self.problems.append(CheckProblem(self.m.name, where, reason))

    def entity_name(self, side: Side) -> str:
        return self.m.fno.entity if side is Side.FNO else self.m.dataverse.table

    def where(self, side: Side, column: str) -> str:
        return f"{side} {self.entity_name(side)}.{column}"

    def column(self, side: Side, name: str) -> Column | None:
        entity = self.entities.get(side)
        return entity.columns.get(name) if entity is not None else None

    def run(self) -> list[CheckProblem]:
        for side in Side:
            entity = self.schemas[side].entities.get(self.entity_name(side))
            self.entities[side] = entity
            if entity is None:
                what = "entity (entity set)" if side is Side.FNO else "table"
                self.problem(f"{side}.{'entity' if side is Side.FNO else 'table'}",
                             f"the {what} {self.entity_name(side)} does not exist in {_app(side)}")  # fmt: skip
                continue
            for name in sorted(self.m.readable(side)):
                if name not in entity.columns:
                    self.problem(self.where(side, name), f"the column does not exist in {_app(side)}")
        self.keys()
        for f in self.m.fields:
            for into in Side:
                if self.m.flows(f, into):
                    self.flow(f, into)
        self.filters()
        return self.problems

    # --- keys -----------------------------------------------------------------------------------------------------

    def keys(self) -> None:
        dataverse = self.entities[Side.DATAVERSE]
        wanted = frozenset(self.m.dataverse.key)
        if dataverse is not None and wanted <= dataverse.columns.keys() and wanted not in dataverse.keys:
            published = "; ".join(", ".join(sorted(k)) for k in dataverse.keys) or "none"
            columns = ", ".join(self.m.dataverse.key)
            self.problem("dataverse.key", f"no alternate key of {self.m.dataverse.table} has exactly the columns "
                                          f"{columns} (its alternate keys: {published})")  # fmt: skip
        fno = self.entities[Side.FNO]
        wanted = frozenset(self.m.fno.key)
        if fno is not None and fno.keys and wanted <= fno.columns.keys() and wanted not in fno.keys:
            published = "; ".join(", ".join(sorted(k)) for k in fno.keys)
            self.problem("fno.key", f"the key of {self.m.fno.entity} is {published}, not {', '.join(self.m.fno.key)}")

    # --- one field in one direction -------------------------------------------------------------------------------

    def flow(self, f: FieldMap, into: Side) -> None:
        source_side = into.other
        target_name = f.dataverse if into is Side.DATAVERSE else f.fno
        source_name = f.fno if into is Side.DATAVERSE else f.dataverse
        assert target_name is not None
        target = self.column(into, target_name)
        if target is None:
            return  # reported as missing (or its entity is)
        where = self.where(into, target_name)
        expression = (self.compiled.to_dataverse if into is Side.DATAVERSE else self.compiled.to_fno).get(target_name)
        source = self.column(source_side, source_name) if source_name and expression is None else None
        if f.lookup:
            self.lookup(f, into, target, where)
            return
        if target.kind is Kind.LOOKUP and target_name != self.m.company_field(into):
            unsynced = sorted(target.targets - self.synced)
            if target.targets and not (target.targets & self.synced):
                self.problem(where, f"a lookup to {', '.join(unsynced)}, which no map syncs")
            else:
                self.problem(where, "a lookup column: the field needs `lookup: <map>` to be written")
            return
        if f.default is not None:
            self.value_fits(target, f.default, where, "the default")
        if f.value_map is not None:
            values = f.value_map.values() if into is Side.DATAVERSE else f.value_map.keys()
            for value in values:
                self.value_fits(target, value, where, "the value map's value")
            one_way = not self.m.flows(f, source_side)  # two-way: the other direction checks the source's values
            if one_way and source is not None and source.kind is Kind.CHOICE and source.options is not None:
                sources = f.value_map.keys() if into is Side.DATAVERSE else f.value_map.values()
                for value in sources:
                    if not _defined(source.options, value):
                        self.problem(self.where(source_side, str(source_name)),
                                     f"the value map names {value!r}, which {_app(source_side)} does not define"
                                     f"{_options(source)}")  # fmt: skip
        if source is None or expression is not None:
            return
        self.types(f, into, source, target, where)
        self.length(f, source, target, where)

    def lookup(self, f: FieldMap, into: Side, target: Column, where: str) -> None:
        referenced = self.maps.maps.get(str(f.lookup))
        if into is not Side.DATAVERSE or referenced is None:
            return
        table = referenced.map.dataverse.table
        if target.kind is not Kind.LOOKUP:
            self.problem(where, f"the field is a lookup to {f.lookup} but the column is {target.kind}, not a lookup")
        elif target.targets and table not in target.targets:
            self.problem(where, f"the lookup references {', '.join(sorted(target.targets))}, not {table} "
                                f"(the table map {f.lookup} syncs)")  # fmt: skip

    def value_fits(self, target: Column, value: Any, where: str, what: str) -> None:
        if value is None:
            return
        if target.kind is Kind.CHOICE and target.options is not None and not _defined(target.options, value):
            self.problem(where, f"{what} {value!r} is not defined{_options(target)}")
        elif target.kind is Kind.TEXT and isinstance(value, str) and len(value) > (target.max_length or len(value)):
            self.problem(where, f"{what} {value!r} is longer than the column's {target.max_length} characters")
        elif target.kind in NUMBERS and isinstance(value, str):
            self.problem(where, f"{what} {value!r} is text; the column is a number")

    def types(self, f: FieldMap, into: Side, source: Column, target: Column, where: str) -> None:
        conversion = f.type
        if conversion is TypeConversion.NOYES_BOOLEAN:
            boolean, noyes = (target, source) if into is Side.DATAVERSE else (source, target)
            if boolean.kind is not Kind.BOOLEAN:
                self.problem(where, f"noyes_boolean needs a Dataverse boolean, not {boolean.kind}")
            if noyes.kind is Kind.CHOICE and noyes.options is not None and not {"Yes", "No"} <= noyes.options:
                self.problem(where, f"noyes_boolean needs an F&O enum with Yes and No{_options(noyes)}")
            return
        if conversion is TypeConversion.ENUM_CHOICE or f.value_map is not None:
            if target.kind in (Kind.TEXT, Kind.CHOICE, Kind.BOOLEAN, *NUMBERS):
                return  # the value map's values were checked one by one
        if conversion is TypeConversion.DECIMAL:
            if target.kind is Kind.TEXT:
                needed = (source.precision or 32) + 2
                if target.max_length is not None and target.max_length < needed:
                    self.problem(where, f"a decimal of up to {needed - 2} digits into text of {target.max_length} "
                                        "characters cannot carry every value")  # fmt: skip
            elif target.kind is not Kind.DECIMAL:
                self.problem(where, f"a decimal into a {target.kind} column")
            return
        if conversion in (TypeConversion.DATE, TypeConversion.DATETIME):
            if target.kind is not Kind.DATETIME and target.kind is not Kind.TEXT:
                self.problem(where, f"a date/time into a {target.kind} column")
            return
        self.plain(source, target, where)

    def plain(self, source: Column, target: Column, where: str) -> None:
        """A value copied as it is: the target's type must carry every value the source's can hold."""
        s, t = source.kind, target.kind
        if s is t and s is not Kind.CHOICE:
            return
        if t is Kind.TEXT:
            if s is Kind.CHOICE and source.options is not None and all(isinstance(o, str) for o in source.options):
                longest = max((len(str(o)) for o in source.options), default=0)
                if target.max_length is not None and longest > target.max_length:
                    self.problem(where, f"enum symbols of up to {longest} characters into text of {target.max_length}")
                return
            needed = _TEXT_NEEDED.get(s)
            if s is Kind.DECIMAL:
                needed = (source.precision or 32) + 2
            if needed and target.max_length is not None and target.max_length < needed:
                self.problem(where, f"{s} values need up to {needed} characters; the column holds {target.max_length}")
            return
        if s is Kind.TEXT and t in (*NUMBERS, Kind.BOOLEAN, Kind.DATETIME, Kind.GUID):
            self.problem(where, f"text into {_a(t)} column (give the field a type or a value map)")
        elif s is Kind.DECIMAL and t is Kind.INTEGER:
            self.problem(where, "a decimal into a whole-number column loses the fraction")
        elif t is Kind.CHOICE:
            if s is Kind.CHOICE and source.options is not None and target.options is not None:
                undefined = sorted(str(o) for o in source.options if not _defined(target.options, o))
                if undefined:
                    self.problem(where, f"{', '.join(undefined)} {'is' if len(undefined) == 1 else 'are'} not defined"
                                        f"{_options(target)}")  # fmt: skip
            elif s is not Kind.INTEGER:
                self.problem(where, f"{s} values into a choice column need a value map (type enum_choice)")
        elif s is Kind.CHOICE and t in (*NUMBERS, Kind.BOOLEAN):
            self.problem(where, f"an enum into a {t} column needs a value map (or type noyes_boolean)")

    def length(self, f: FieldMap, source: Column, target: Column, where: str) -> None:
        if target.kind is not Kind.TEXT or source.kind is not Kind.TEXT:
            return
        if source.max_length is None or target.max_length is None or source.max_length <= target.max_length:
            return
        cut = f.text.max_length if f.text is not None else None
        if cut is not None and cut <= target.max_length:
            return
        self.problem(where, f"text of up to {source.max_length} characters into a column of {target.max_length}"
                            " (shorten it with `text: {max_length: …}`, or lengthen the column)")  # fmt: skip

    # --- filters ------------------------------------------------------------------------------------------------

    def filters(self) -> None:
        for side, expression in self.compiled.filters.items():
            where = f"filters.{side}"
            checked = self.enum_literals(expression.source, where) if side is Side.FNO else set()
            for name, literal in _compared(expression.tree):
                if literal in checked:
                    continue
                column = self.column(side, name)
                if column is not None and column.kind is Kind.CHOICE and column.options is not None:
                    if not _defined(column.options, literal):
                        self.problem(where, f"{name} is compared with {literal!r}, which is not defined"
                                            f"{_options(column)}")  # fmt: skip

    def enum_literals(self, source: str, where: str) -> set[str]:
        """`Enum::Value`: the enum named (or the enum of the field named) must define the value."""
        schema = self.schemas[Side.FNO]
        found = re.findall(r"([A-Za-z_]\w*)::([A-Za-z_]\w*)", source)
        for enum_name, value in found:
            column = self.column(Side.FNO, enum_name)
            symbols = schema.enums.get(enum_name)
            if symbols is None and column is not None and column.kind is Kind.CHOICE and column.options is not None:
                symbols = frozenset(str(s) for s in column.options)
            if symbols is not None and value not in symbols:
                self.problem(where, f"{enum_name}::{value} is not defined (defined: {', '.join(sorted(symbols))})")
        return {value for _, value in found}


def _compared(node: Node) -> Iterator[tuple[str, Any]]:
    """(field, literal) of every `field == literal` / `!=` comparison."""
    if isinstance(node, Binary):
        if node.op in ("==", "!="):
            if isinstance(node.left, Field) and isinstance(node.right, Literal):
                yield node.left.name, node.right.value
            elif isinstance(node.right, Field) and isinstance(node.left, Literal):
                yield node.right.name, node.left.value
        yield from _compared(node.left)
        yield from _compared(node.right)
    elif isinstance(node, Unary):
        yield from _compared(node.operand)
    elif isinstance(node, Call):
        for arg in node.args:
            yield from _compared(arg)


def _defined(options: frozenset[str | int], value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if value in options:
        return True
    return str(value) in {str(o) for o in options}


def _options(column: Column) -> str:
    if column.options is None:
        return ""
    shown = sorted(column.options, key=str)
    where = f" in {column.enum}" if column.enum else ""
    return f"{where} (defined: {', '.join(str(o) for o in shown)})"


def _a(kind: Kind) -> str:
    return f"an {kind}" if kind is Kind.INTEGER else f"a {kind}"


def _app(side: Side) -> str:
    return "F&O" if side is Side.FNO else "Dataverse"
