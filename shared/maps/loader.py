"""Loads `maps/tables/*.yaml`, checks everything, and reports every problem at once (file, map, field)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.events.fno import FnoEntityNames
from shared.maps.expressions import Expression, ExpressionError, parse
from shared.maps.model import Direction, Side, TableMap, TypeConversion
from shared.maps.transform import CompiledMap, compile_map

MAPS_DIR = Path(__file__).resolve().parents[2] / "maps" / "tables"


@dataclass(frozen=True)
class Problem:
    file: str
    map: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = ":".join(p for p in (self.file, self.map, self.field) if p)
        return f"{where}: {self.message}"


class MapProblems(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the table maps:\n" + "\n".join(f"  {p}" for p in self.problems)
        )


_READERS_KEPT = 1024


@dataclass
class MapSet:
    """The loaded maps. Not changed after loading: what `reading` finds is kept (every change asks, twice)."""

    maps: dict[str, CompiledMap]
    order: list[str]  # dependencies first
    files: dict[str, str] = field(default_factory=dict)
    _readers: dict[tuple[str, str], tuple[CompiledMap, ...]] = field(default_factory=dict, repr=False, compare=False)

    def enabled(self) -> list[CompiledMap]:
        return [self.maps[n] for n in self.order if self.maps[n].map.enabled]

    def reading(self, side: Side, entity: str) -> tuple[CompiledMap, ...]:
        """Enabled maps that read changes of `entity` on `side` (and write them to the other side)."""
        known = self._readers.get((side.value, entity))
        if known is None:
            known = tuple(self._find_reading(side, entity))
            if len(self._readers) < _READERS_KEPT:  # entity names come from outside: keep a bounded number
                self._readers[(side.value, entity)] = known
        return known

    def _find_reading(self, side: Side, entity: str) -> list[CompiledMap]:
        wanted = entity.lower()
        found = []
        for c in self.enabled():
            name = c.map.fno.entity if side is Side.FNO else c.map.dataverse.table
            virtual = (c.map.fno.virtual_table or "").lower() if side is Side.FNO else ""
            if wanted in (name.lower(), virtual) and any(c.map.flows(f, side.other) for f in c.map.fields):
                found.append(c)
        return found

    def for_virtual_table(self, table: str) -> FnoEntityNames | None:
        """How the data events of a virtual table name the entity's fields (the catalog the F&O parser needs)."""
        for c in self.maps.values():
            if (c.map.fno.virtual_table or "").lower() == table.lower():
                fields = {n.lower(): n for n in c.map.readable(Side.FNO)}
                return FnoEntityNames(c.map.fno.entity, fields, tuple(c.map.fno.key))
        return None


def _documents(path: Path, problems: list[Problem]) -> list[tuple[dict[str, Any], str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problems.append(Problem(path.name, None, None, f"not valid YAML: {exc}"))
        return []
    if isinstance(data, dict) and "maps" in data and "name" not in data:
        data = data["maps"]
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items:
        if not isinstance(item, dict):
            problems.append(Problem(path.name, None, None, "a map must be a mapping with name, fno, dataverse, fields"))
            continue
        out.append((item, path.name))
    return out


def _validation_problems(exc: ValidationError, raw: dict[str, Any], file: str) -> list[Problem]:
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    out = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = None
        if len(loc) >= 2 and loc[0] == "fields" and isinstance(loc[1], int):
            fields = raw.get("fields") or []
            f = fields[loc[1]] if loc[1] < len(fields) and isinstance(fields[loc[1]], dict) else {}
            where = f"fields[{loc[1]}] {f.get('fno') or '∅'}↔{f.get('dataverse') or '∅'}"
            loc = loc[2:]
        out.append(Problem(file, name, where, f"{'.'.join(str(x) for x in loc) or 'map'}: {error['msg']}"))
    return out


def _compile(m: TableMap, file: str, problems: list[Problem]) -> CompiledMap:
    def parsed(source: str, readable: set[str], where: str | None, what: str) -> Expression | None:
        try:
            expression = parse(source)
        except ExpressionError as exc:
            problems.append(Problem(file, m.name, where, f"{what} does not parse: {exc}"))
            return None
        unknown = sorted(expression.fields - readable)
        if unknown:
            problems.append(Problem(file, m.name, where, f"{what} uses unknown field(s): {', '.join(unknown)}"))
            return None
        return expression

    to_dataverse: dict[str, Expression] = {}
    to_fno: dict[str, Expression] = {}
    fno_fields, dataverse_fields = m.readable(Side.FNO), m.readable(Side.DATAVERSE)
    for f in m.fields:
        direction = m.direction_of(f)
        if f.to_dataverse:
            if direction is Direction.TO_FNO or not f.dataverse:
                problems.append(
                    Problem(file, m.name, f.label, "to_dataverse on a field that is not written to Dataverse")
                )
            elif (e := parsed(f.to_dataverse, fno_fields, f.label, "to_dataverse")) is not None:
                to_dataverse[f.dataverse] = e
        if f.to_fno:
            if direction is Direction.TO_DATAVERSE or not f.fno:
                problems.append(Problem(file, m.name, f.label, "to_fno on a field that is not written to F&O"))
            elif (e := parsed(f.to_fno, dataverse_fields, f.label, "to_fno")) is not None:
                to_fno[f.fno] = e
    filters: dict[Side, Expression] = {}
    if m.filters.fno and (e := parsed(m.filters.fno, fno_fields, "filters.fno", "the F&O filter")) is not None:
        filters[Side.FNO] = e
    if m.filters.dataverse and (
        e := parsed(m.filters.dataverse, dataverse_fields, "filters.dataverse", "the Dataverse filter")
    ):
        filters[Side.DATAVERSE] = e
    return compile_map(m, to_dataverse, to_fno, filters)


def _check(m: TableMap, names: set[str], file: str, problems: list[Problem]) -> None:
    def problem(where: str | None, message: str) -> None:
        problems.append(Problem(file, m.name, where, message))

    for side in Side:
        company = m.company_field(side)
        for key in m.key(side):
            if key == company:
                continue
            if side is Side.FNO and key == "dataAreaId" and m.company is None:
                problem(f"{side}.key", "dataAreaId is in the key but the map has no `company` striping")
                continue
            f = m.field_for(side, key)
            if f is None:
                problem(f"{side}.key", f"key field {key} is not mapped")
            elif m.dir is Direction.BOTH and m.direction_of(f) is not Direction.BOTH:
                problem(f.label, f"key field {key} must be two-way on a two-way map")
    for f in m.fields:
        direction = m.direction_of(f)
        if f.value_map is not None and direction is Direction.BOTH:
            targets = [str(v) for v in f.value_map.values()]
            duplicates = sorted({t for t in targets if targets.count(t) > 1})
            if duplicates:
                problem(f.label, f"value_map is not invertible: {', '.join(duplicates)} come(s) from several values")
        if f.type is TypeConversion.ENUM_CHOICE:
            if not f.value_map:
                problem(f.label, "type enum_choice needs a value_map from enum symbols to choice numbers")
            elif not all(isinstance(v, int) and not isinstance(v, bool) for v in f.value_map.values()):
                problem(f.label, "enum_choice value_map values must be whole numbers (choice values)")
        if f.lookup and f.lookup not in names:
            problem(f.label, f"lookup to unknown map {f.lookup!r}")
        if f.type is TypeConversion.DECIMAL and f.scale is None:
            problem(f.label, "type decimal needs a scale (decimal places)")
    for dep in m.depends_on:
        if dep not in names:
            problem("depends_on", f"unknown map {dep!r}")
        if dep == m.name:
            problem("depends_on", "a map cannot depend on itself")


def load_maps(paths: Iterable[Path] | None = None) -> MapSet:
    files = sorted(paths) if paths is not None else sorted(MAPS_DIR.glob("*.yaml"))
    problems: list[Problem] = []
    parsed: list[tuple[TableMap, str]] = []
    for path in files:
        for raw, file in _documents(path, problems):
            try:
                parsed.append((TableMap.model_validate(raw), file))
            except ValidationError as exc:
                problems.extend(_validation_problems(exc, raw, file))
    names: dict[str, str] = {}
    for m, file in parsed:
        if m.name in names:
            problems.append(Problem(file, m.name, None, f"the name is used by {names[m.name]} too"))
        names.setdefault(m.name, file)
    compiled: dict[str, CompiledMap] = {}
    for m, file in parsed:
        _check(m, set(names), file, problems)
        compiled.setdefault(m.name, _compile(m, file, problems))
    graph = {
        name: {d for d in c.map.depends_on if d in compiled and d != name}
        | {f.lookup for f in c.map.fields if f.lookup in compiled and f.lookup != name}
        for name, c in compiled.items()
    }
    order: list[str] = []
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        cycle = " → ".join(str(n) for n in exc.args[1])
        problems.append(Problem(names.get(str(exc.args[1][0]), "?"), None, None, f"dependency cycle: {cycle}"))
    if problems:
        raise MapProblems(problems)
    return MapSet(compiled, order, names)
