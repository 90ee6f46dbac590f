"""`transform(map, source, record) → TargetRow`: a row of one app as the other app's row. Pure: no I/O.

Records hold canonical values (`shared.events.model`). Only fields whose direction flows into the target are
written; an absent source field stays absent (a partial update stays partial). Lookups to rows of other maps are
translated through those maps' integration keys; what cannot be resolved without I/O is reported in `missing`,
never guessed, so apply can heal it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, Protocol

from pydantic import JsonValue

from shared.maps.expressions import Expression, ExpressionError
from shared.maps.model import FieldMap, Side, TableMap, TypeConversion


class LookupRef(NamedTuple):
    """A reference to a row of another map, on the target side, by that map's integration key."""

    map: str
    entity_set: str
    key: dict[str, JsonValue]


class MissingReference(NamedTuple):
    """A lookup whose row is not known on the target side yet (apply syncs it first, or defers)."""

    field: str
    map: str
    source_value: JsonValue


@dataclass(slots=True)
class TargetRow:
    map: str
    into: Side
    entity_set: str
    key: dict[str, JsonValue] = field(default_factory=dict)
    values: dict[str, JsonValue] = field(default_factory=dict)
    lookups: dict[str, LookupRef | None] = field(default_factory=dict)
    company: str | None = None
    passes_filter: bool = True
    missing: list[MissingReference] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ReferenceResolver(Protocol):
    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        """The F&O integration key of the row of `map_name` whose Dataverse id is given, if known."""
        ...

    def company_code(self, dataverse_company_id: str) -> str | None: ...


class NoResolver:
    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        return None

    def company_code(self, dataverse_company_id: str) -> str | None:
        return None


_NO_RESOLVER = NoResolver()


class TransformError(ValueError):
    pass


# --- canonical ↔ plain ---------------------------------------------------------------------------------------------


def plain(value: JsonValue) -> Any:
    """A canonical value as expressions see it: a choice is its number, a lookup its id, a decimal a Decimal."""
    if isinstance(value, dict):
        kind = value.get("$type")
        if kind == "choice":
            return value.get("value")
        if kind == "choices":
            return value.get("values")
        if kind in ("decimal", "money"):
            return Decimal(str(value.get("value")))
        if kind == "datetime":
            return value.get("value")
        if kind == "lookup":
            return value.get("id")
    return value


def plain_record(record: Mapping[str, JsonValue]) -> dict[str, Any]:
    return {k: plain(v) for k, v in record.items()}


def _decimal_text(value: Any, scale: int | None) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise TransformError(f"{value!r} is not a number") from None
    if scale is not None:
        number = number.quantize(Decimal(1).scaleb(-scale))
    return format(number, "f")


def _iso_utc(value: Any) -> str:
    text = str(value)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TransformError(f"{value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


# --- one field -----------------------------------------------------------------------------------------------------


def _convert(f: FieldMap, into: Side, value: JsonValue) -> JsonValue:
    """Value map, type conversion and text rules, in the direction of `into`."""
    if value is None:
        return None
    raw = plain(value)
    if f.value_map is not None:
        if into is Side.DATAVERSE:
            key = str(raw)
            if key not in f.value_map:
                raise TransformError(f"no value_map entry for {raw!r}")
            mapped: JsonValue = f.value_map[key]
        else:
            inverse = {_map_key(v): k for k, v in f.value_map.items()}
            if _map_key(raw) not in inverse:
                raise TransformError(f"no value_map entry maps to {raw!r}")
            mapped = inverse[_map_key(raw)]
        raw = mapped
    kind = f.type
    if kind is TypeConversion.ENUM_CHOICE:
        return {"$type": "choice", "value": raw} if into is Side.DATAVERSE else raw
    if kind is TypeConversion.NOYES_BOOLEAN:
        if into is Side.DATAVERSE:
            if raw in ("Yes", "No"):
                return bool(raw == "Yes")
            if isinstance(raw, bool):
                return raw
            raise TransformError(f"{raw!r} is not NoYes (Yes/No)")
        return "Yes" if raw else "No"
    if kind is TypeConversion.DATE:
        day = str(raw)[:10]
        datetime.strptime(day, "%Y-%m-%d")  # raises ValueError with the bad value
        return day if into is Side.DATAVERSE else f"{day}T12:00:00Z"
    if kind is TypeConversion.DATETIME:
        return {"$type": "datetime", "value": _iso_utc(raw)}
    if kind is TypeConversion.DECIMAL:
        return {"$type": "decimal", "value": _decimal_text(raw, f.scale)}
    if f.text is not None and isinstance(raw, str):
        text = raw.strip() if f.text.trim else raw
        if f.text.case == "upper":
            text = text.upper()
        elif f.text.case == "lower":
            text = text.lower()
        if f.text.max_length is not None:
            text = text[: f.text.max_length]
        return text
    if f.value_map is not None or kind is TypeConversion.TEXT:
        return raw  # type: ignore[no-any-return]
    return value


def _converter(f: FieldMap, into: Side) -> Callable[[JsonValue], JsonValue]:
    """`_convert` for one field and direction, specialised for the common single-rule cases."""
    if f.value_map is None and f.type is None and f.text is not None:
        rule = f.text

        def text(value: JsonValue) -> JsonValue:
            if not isinstance(value, str):
                return value
            out = value.strip() if rule.trim else value
            if rule.case == "upper":
                out = out.upper()
            elif rule.case == "lower":
                out = out.lower()
            return out[: rule.max_length] if rule.max_length is not None else out

        return text
    if f.value_map is None and f.type is TypeConversion.NOYES_BOOLEAN and into is Side.DATAVERSE:

        def noyes(value: JsonValue) -> JsonValue:
            if value == "Yes":
                return True
            if value == "No" or value is None:
                return False if value == "No" else None
            return _convert(f, into, value)

        return noyes
    if f.value_map is None and f.type is TypeConversion.DECIMAL and f.text is None:
        scale = f.scale

        def decimal(value: JsonValue) -> JsonValue:
            if value is None:
                return None
            return {"$type": "decimal", "value": _decimal_text(plain(value), scale)}

        return decimal
    return lambda value: _convert(f, into, value)


def _map_key(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# --- the whole row -------------------------------------------------------------------------------------------------


Step = Callable[["TargetRow", Mapping[str, JsonValue], Mapping[str, "CompiledMap"], "ReferenceResolver"], None]


@dataclass(frozen=True)
class CompiledMap:
    """A validated map with its expressions parsed and its per-direction work decided once (see the loader).

    Per side written into: `copies` (fields taken as they are), `constants` (columns only the target has, always
    their default) and `steps` (one small function per field that needs more: keys, conversions, lookups,
    expressions, defaults).
    """

    map: TableMap
    to_dataverse: Mapping[str, Expression]  # Dataverse column → expression over F&O fields
    to_fno: Mapping[str, Expression]  # F&O field → expression over Dataverse columns
    filters: Mapping[Side, Expression]
    copies: Mapping[Side, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    constants: Mapping[Side, dict[str, JsonValue]] = field(default_factory=dict)
    steps: Mapping[Side, tuple[tuple[FieldMap, Step], ...]] = field(default_factory=dict)
    filter_runs: Mapping[Side, Callable[[Mapping[str, JsonValue]], Any]] = field(default_factory=dict)


def _step(
    f: FieldMap, into: Side, target: str, origin: str | None, expression: Expression | None, is_key: bool
) -> Step:
    """The work for one field in one direction, as one function (decided here, not on every row)."""
    converter = _converter(f, into) if (f.value_map is not None or f.type is not None or f.text is not None) else None
    derive = expression.reading(plain) if expression is not None else None
    default = f.default
    lookup = f.lookup

    def step(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        if derive is not None:
            value: JsonValue = derive(record)
            if isinstance(value, Decimal):
                value = {"$type": "decimal", "value": format(value, "f")}
        elif origin is not None and origin in record:
            value = record[origin]
        elif default is not None:
            value = default
        else:
            return  # absent stays absent
        if value is None and default is not None:
            value = default
        if lookup:
            _lookup(row, f, into, target, value, maps, resolve)
            return
        if converter is not None:
            value = converter(value)
        if is_key:
            row.key[target] = value
        else:
            row.values[target] = value

    return step


def compile_map(
    m: TableMap,
    to_dataverse: Mapping[str, Expression],
    to_fno: Mapping[str, Expression],
    filters: Mapping[Side, Expression],
) -> CompiledMap:
    copies: dict[Side, tuple[tuple[str, str], ...]] = {}
    constants: dict[Side, dict[str, JsonValue]] = {}
    steps: dict[Side, tuple[tuple[FieldMap, Step], ...]] = {}
    for into in Side:
        expressions = to_dataverse if into is Side.DATAVERSE else to_fno
        company = m.company_field(into) if m.company is not None else None
        key = set(m.key(into))
        plain_copies: list[tuple[str, str]] = []
        fixed: dict[str, JsonValue] = {}
        work: list[tuple[FieldMap, Step]] = []
        for f in m.fields:
            target = f.dataverse if into is Side.DATAVERSE else f.fno
            if not m.flows(f, into) or target is None or (company is not None and target == company):
                continue
            converts = bool(f.value_map is not None or f.type is not None or f.text is not None)
            origin = f.fno if into is Side.DATAVERSE else f.dataverse
            plain_field = not converts and not f.lookup and target not in key and target not in expressions
            if plain_field and origin is not None and f.default is None:
                plain_copies.append((origin, target))  # the common case: one dict lookup per row
            elif plain_field and origin is None:
                fixed[target] = f.default  # a column only this side has: always its default
            else:
                work.append((f, _step(f, into, target, origin, expressions.get(target), target in key)))
        copies[into], constants[into], steps[into] = tuple(plain_copies), fixed, tuple(work)
    runs = {side: e.reading(plain) for side, e in filters.items()}
    return CompiledMap(m, to_dataverse, to_fno, filters, copies, constants, steps, runs)


def passes_filter(compiled: CompiledMap, side: Side, record: Mapping[str, JsonValue]) -> bool:
    run = compiled.filter_runs.get(side)
    if run is None:
        return True
    try:
        return bool(run(record))
    except ExpressionError:
        return False


def transform(
    compiled: CompiledMap,
    source: Side,
    record: Mapping[str, JsonValue],
    maps: Mapping[str, CompiledMap],
    resolver: ReferenceResolver | None = None,
) -> TargetRow:
    """`record` (a row of `source`) → the row to write into the other side."""
    m = compiled.map
    into = source.other
    resolve = resolver or _NO_RESOLVER
    row = TargetRow(
        map=m.name,
        into=into,
        entity_set=m.dataverse.entity_set if into is Side.DATAVERSE else m.fno.entity,
        passes_filter=passes_filter(compiled, source, record),
    )

    if m.company is not None:
        code = _company_code(m, source, record, resolve) or m.company.default
        if code is None and not (into is Side.DATAVERSE and m.company.dataverse is None):
            row.errors.append(f"{m.company_field(source) or 'company'}: the company is missing or unknown")
        elif code is not None:
            row.company = code.lower()
            if into is Side.FNO:
                row.key[m.company.fno] = code.lower()
            elif m.company.dataverse is not None:
                row.key[m.company.dataverse] = code.upper()
                row.lookups[m.company.dataverse] = LookupRef(
                    "companies", m.company.table_entity_set, {m.company.code: code.upper()}
                )

    row.values.update({target: record[origin] for origin, target in compiled.copies[into] if origin in record})
    row.values.update(compiled.constants[into])
    for f, step in compiled.steps[into]:
        try:
            step(row, record, maps, resolve)
        except (TransformError, ExpressionError, ValueError) as exc:
            row.errors.append(f"{f.label}: {exc}")
    return row


def _company_code(m: TableMap, source: Side, record: Mapping[str, JsonValue], resolve: ReferenceResolver) -> str | None:
    name = m.company_field(source)
    value = record.get(name) if name else None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and value.get("$type") == "lookup" and value.get("id"):
        return resolve.company_code(str(value["id"]))
    return None


_TEMPLATES: dict[int, tuple[tuple[str, bool], ...]] = {}


def _dataverse_key_template(referenced: TableMap) -> tuple[tuple[str, bool], ...]:
    """(Dataverse key column, is it the company) for a map referenced by a lookup; worked out once per map."""
    cached = _TEMPLATES.get(id(referenced))
    if cached is not None:
        return cached
    own = [k for k in referenced.fno.key if k != referenced.company_field(Side.FNO)]
    if len(own) != 1:
        raise TransformError(f"{referenced.name} has a composite key: a single lookup value cannot name its row")
    template = []
    for name in referenced.dataverse.key:
        if name == referenced.company_field(Side.DATAVERSE):
            template.append((name, True))
            continue
        counterpart = referenced.field_for(Side.DATAVERSE, name)
        if counterpart is None or counterpart.fno != own[0]:
            raise TransformError(f"{referenced.name}: key column {name} does not map from {own[0]}")
        template.append((name, False))
    _TEMPLATES[id(referenced)] = tuple(template)
    return _TEMPLATES[id(referenced)]


def _lookup(
    row: TargetRow,
    f: FieldMap,
    into: Side,
    target: str,
    value: JsonValue,
    maps: Mapping[str, CompiledMap],
    resolve: ReferenceResolver,
) -> None:
    referenced = maps[f.lookup].map if f.lookup is not None and f.lookup in maps else None
    if referenced is None:
        raise TransformError(f"lookup to unknown map {f.lookup!r}")
    if value is None:
        if into is Side.DATAVERSE:
            row.lookups[target] = None  # clear the reference
        else:
            row.values[target] = None
        return
    if into is Side.DATAVERSE:
        # F&O holds the referenced row's own key value: its Dataverse key follows from the referenced map.
        key: dict[str, JsonValue] = {}
        for name, is_company in _dataverse_key_template(referenced):
            if not is_company:
                key[name] = plain(value)
            elif row.company is None:
                raise TransformError("the referenced map is company-specific but this row has no company")
            else:
                key[name] = row.company.upper()
        row.lookups[target] = LookupRef(referenced.name, referenced.dataverse.entity_set, key)
        return
    # Into F&O: Dataverse holds a lookup (a row id); its F&O key comes from what we know of that row.
    reference_id = plain(value)
    fno_key = resolve.fno_key(referenced.name, str(reference_id))
    if fno_key is None:
        row.missing.append(MissingReference(target, referenced.name, value))
        return
    own = [k for k in referenced.fno.key if k != referenced.company_field(Side.FNO)]
    row.values[target] = fno_key.get(own[0]) if len(own) == 1 else None
