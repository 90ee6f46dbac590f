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
from functools import partial
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from pydantic import JsonValue

from shared.maps.expressions import Expression, ExpressionError
from shared.maps.model import FieldMap, Side, TableMap, TypeConversion


class LookupRef(NamedTuple):
    """A reference to a row of another map, on the target side, by that map's integration key."""

    map: str
    entity_set: str
    key: dict[str, JsonValue]


# Built with tuple.__new__: NamedTuple's generated __new__ is a Python frame, and a row makes several of these.
_new_lookup_ref: Callable[[tuple[str, str, dict[str, JsonValue]]], LookupRef] = partial(tuple.__new__, LookupRef)  # type: ignore[arg-type]


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
# Enum members as module globals for the per-row paths: in 3.11 `Side.FNO` is a descriptor call, not a dict hit.
_FNO, _DATAVERSE = Side.FNO, Side.DATAVERSE
_ENUM_CHOICE, _NOYES, _DATE = TypeConversion.ENUM_CHOICE, TypeConversion.NOYES_BOOLEAN, TypeConversion.DATE
_DATETIME, _DECIMAL, _TEXT = TypeConversion.DATETIME, TypeConversion.DECIMAL, TypeConversion.TEXT


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


_EXPONENTS: dict[int, Decimal] = {}


def _decimal_text(value: Any, scale: int | None) -> str:
    try:
        number = value if isinstance(value, Decimal) else Decimal(value if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise TransformError(f"{value!r} is not a number") from None
    if scale is not None:
        exponent = _EXPONENTS.get(scale)
        if exponent is None:
            exponent = _EXPONENTS[scale] = Decimal(1).scaleb(-scale)
        try:
            number = number.quantize(exponent)
        except InvalidOperation:
            raise TransformError(f"{value!r} has too many digits for {scale} decimal places") from None
        text = str(number)  # plain notation unless tiny (below 1E-6): then format's fixed point
        return text if "E" not in text else format(number, "f")
    return format(number, "f")


FNO_EMPTY_DATE = "1900-01-01"


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
    if into is _DATAVERSE and (f.type is _DATE or f.type is _DATETIME) and str(raw).startswith(FNO_EMPTY_DATE):
        # F&O answers an empty date as 1900-01-01 ("Entity modeling": "An empty date (January 1, 1900) in Finance
        # and Operations is surfaced as a null value in Dataverse"): written into Dataverse, it is no date.
        return None
    if f.value_map is not None:
        if into is _DATAVERSE:
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
    if kind is _ENUM_CHOICE:
        return {"$type": "choice", "value": raw} if into is _DATAVERSE else raw
    if kind is _NOYES:
        if into is _DATAVERSE:
            if raw in ("Yes", "No"):
                return bool(raw == "Yes")
            if isinstance(raw, bool):
                return raw
            raise TransformError(f"{raw!r} is not NoYes (Yes/No)")
        return "Yes" if raw else "No"
    if kind is _DATE:
        day = str(raw)[:10]
        datetime.strptime(day, "%Y-%m-%d")  # raises ValueError with the bad value
        return day if into is _DATAVERSE else f"{day}T12:00:00Z"
    if kind is _DATETIME:
        return {"$type": "datetime", "value": _iso_utc(raw)}
    if kind is _DECIMAL:
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
    if f.value_map is not None or kind is _TEXT:
        return raw  # type: ignore[no-any-return]
    return value


def _converter(f: FieldMap, into: Side) -> Callable[[JsonValue], JsonValue]:
    """`_convert` for one field and direction."""
    return lambda value: _convert(f, into, value)


def _map_key(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# --- the whole row -------------------------------------------------------------------------------------------------


Step = Callable[["TargetRow", Mapping[str, JsonValue], Mapping[str, "CompiledMap"], "ReferenceResolver"], None]


@dataclass(frozen=True, slots=True)
class Writing:
    """The work for every row written into one side, decided once from the map (see `compile_map`).

    `copy` takes the fields that pass as they are, `constants` are columns only the target has (always their
    default), `company` stripes the row, and `steps` are one small function per field that needs more (keys,
    conversions, lookups, expressions, defaults), each with the field's label for its errors.
    """

    into: Side
    entity_set: str
    source_filter: Callable[[Mapping[str, JsonValue]], Any] | None
    copy: Callable[[Mapping[str, JsonValue]], dict[str, JsonValue]]
    constants: dict[str, JsonValue]
    company: Callable[[TargetRow, Mapping[str, JsonValue], ReferenceResolver], None] | None
    steps: tuple[tuple[str, Step], ...]


@dataclass(frozen=True)
class CompiledMap:
    """A validated map with its expressions parsed and its per-direction work decided once (see the loader)."""

    map: TableMap
    to_dataverse: Mapping[str, Expression]  # Dataverse column → expression over F&O fields
    to_fno: Mapping[str, Expression]  # F&O field → expression over Dataverse columns
    filters: Mapping[Side, Expression]
    into_dataverse: Writing
    into_fno: Writing
    filter_runs: Mapping[Side, Callable[[Mapping[str, JsonValue]], Any]] = field(default_factory=dict)


def _step(
    f: FieldMap, into: Side, target: str, origin: str | None, expression: Expression | None, is_key: bool
) -> Step:
    """The work for one field in one direction, as one function (decided here, not on every row)."""
    converter = _converter(f, into) if (f.value_map is not None or f.type is not None or f.text is not None) else None
    default = f.default
    if expression is None and origin is not None and default is None:
        return _taken(f, into, target, origin, converter, is_key)
    derive = expression.reading(plain) if expression is not None else None
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


_ABSENT: Any = object()


def _taken(
    f: FieldMap,
    into: Side,
    target: str,
    origin: str,
    converter: Callable[[JsonValue], JsonValue] | None,
    is_key: bool,
) -> Step:
    """The common step: a source field taken as it is or converted, no expression, no default."""
    if f.lookup is not None and into is Side.DATAVERSE:
        return _lookup_into_dataverse(f, target, origin)
    if f.lookup is not None:
        return _lookup_into_fno(f, target, origin)

    if f.value_map is None and f.type is None and f.text is not None and not is_key:
        return _text_taken(f, target, origin)
    if f.value_map is None and f.type is TypeConversion.DECIMAL and f.text is None and not is_key:
        return _decimal_taken(f, target, origin)
    if f.value_map is None and f.type is TypeConversion.NOYES_BOOLEAN and f.text is None and not is_key:
        return _noyes_taken(f, into, target, origin)

    def taken(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return  # absent stays absent
        if converter is not None:
            value = converter(value)
        (row.key if is_key else row.values)[target] = value

    return taken


# The most common converted fields as one frame each (read, convert, write): a call saved per field and row.


def _text_taken(f: FieldMap, target: str, origin: str) -> Step:
    assert f.text is not None
    trim, case, max_length = f.text.trim, f.text.case, f.text.max_length

    def text(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return
        if isinstance(value, str):
            if trim:
                value = value.strip()
            if case == "upper":
                value = value.upper()
            elif case == "lower":
                value = value.lower()
            if max_length is not None:
                value = value[:max_length]
        row.values[target] = value

    return text


def _noyes_taken(f: FieldMap, into: Side, target: str, origin: str) -> Step:
    if into is Side.FNO:

        def yes_no(
            row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
        ) -> None:
            value = record.get(origin, _ABSENT)
            if value is _ABSENT:
                return
            if value is True or value is False:
                row.values[target] = "Yes" if value else "No"
            else:
                row.values[target] = _convert(f, _FNO, value)

        return yes_no

    def noyes(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return
        if value == "Yes":
            row.values[target] = True
        elif value == "No":
            row.values[target] = False
        else:
            row.values[target] = _convert(f, _DATAVERSE, value)

    return noyes


def _decimal_taken(f: FieldMap, target: str, origin: str) -> Step:
    scale = f.scale
    exponent = Decimal(1).scaleb(-scale) if scale is not None else None

    def decimal(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return
        if value is None:
            row.values[target] = None
            return
        if isinstance(value, dict) and value.get("$type") in ("decimal", "money"):
            value = value.get("value")  # the text itself: one Decimal built, not two
        if exponent is not None and isinstance(value, str):  # the usual case, without _decimal_text's frame
            try:
                text = str(Decimal(value).quantize(exponent))
            except InvalidOperation:
                text = "E"  # not a number, or too many digits: _decimal_text says which
            if "E" not in text:
                row.values[target] = {"$type": "decimal", "value": text}
                return
        row.values[target] = {"$type": "decimal", "value": _decimal_text(value, scale)}

    return decimal


def _referenced_map(f: FieldMap, maps: Mapping[str, CompiledMap]) -> TableMap:
    if f.lookup is None or f.lookup not in maps:
        raise TransformError(f"lookup to unknown map {f.lookup!r}")
    return maps[f.lookup].map


def _lookup_into_dataverse(f: FieldMap, target: str, origin: str) -> Step:
    """F&O holds the referenced row's own key value: its Dataverse key follows from the referenced map, worked out
    on the first row and kept (the referenced map's entity set and key template do not change)."""
    known: list[Any] = [None, None]  # [maps it was worked out from, (name, entity set, key template)]

    def looked_up(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return
        if value is None:
            row.lookups[target] = None  # clear the reference
            return
        if known[0] is not maps:
            referenced = _referenced_map(f, maps)
            known[:] = maps, (referenced.name, referenced.dataverse.entity_set, _dataverse_key_template(referenced))
        name, entity_set, template = known[1]
        own = plain(value) if isinstance(value, dict) else value
        key: dict[str, JsonValue] = {}
        for column, is_company in template:
            if not is_company:
                key[column] = own
            elif row.company is None:
                raise TransformError("the referenced map is company-specific but this row has no company")
            else:
                key[column] = row.company.upper()
        row.lookups[target] = _new_lookup_ref((name, entity_set, key))

    return looked_up


def _lookup_into_fno(f: FieldMap, target: str, origin: str) -> Step:
    """Dataverse holds a lookup (a row id); its F&O key value comes from what the ledger knows of that row."""
    known: list[Any] = [None, None]  # [maps it was worked out from, (referenced map, its own key field or None)]

    def looked_up(
        row: TargetRow, record: Mapping[str, JsonValue], maps: Mapping[str, CompiledMap], resolve: ReferenceResolver
    ) -> None:
        value = record.get(origin, _ABSENT)
        if value is _ABSENT:
            return
        if value is None:
            row.values[target] = None
            return
        if known[0] is not maps:
            referenced = _referenced_map(f, maps)
            own = [k for k in referenced.fno.key if k != referenced.company_field(Side.FNO)]
            known[:] = maps, (referenced.name, own[0] if len(own) == 1 else None)
        name, own_field = known[1]
        reference_id = value.get("id") if isinstance(value, dict) and value.get("$type") == "lookup" else plain(value)
        fno_key = resolve.fno_key(name, str(reference_id))
        if fno_key is None:
            row.missing.append(MissingReference(target, name, value))
        else:
            row.values[target] = fno_key.get(own_field) if own_field is not None else None

    return looked_up


def compile_map(
    m: TableMap,
    to_dataverse: Mapping[str, Expression],
    to_fno: Mapping[str, Expression],
    filters: Mapping[Side, Expression],
) -> CompiledMap:
    runs = {side: e.reading(plain) for side, e in filters.items()}
    writing: dict[Side, Writing] = {}
    for into in Side:
        expressions = to_dataverse if into is Side.DATAVERSE else to_fno
        company = m.company_field(into) if m.company is not None else None
        key = set(m.key(into))
        plain_copies: list[tuple[str, str]] = []
        fixed: dict[str, JsonValue] = {}
        work: list[tuple[str, Step]] = []
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
                work.append((f.label, _step(f, into, target, origin, expressions.get(target), target in key)))
        entity_set = m.dataverse.entity_set if into is Side.DATAVERSE else m.fno.entity
        stripe = _company_stripe(m, into) if m.company is not None else None
        copy = _copier(tuple(plain_copies))
        writing[into] = Writing(into, entity_set, runs.get(into.other), copy, fixed, stripe, tuple(work))
    return CompiledMap(m, to_dataverse, to_fno, filters, writing[Side.DATAVERSE], writing[Side.FNO], runs)


def _company_stripe(m: TableMap, into: Side) -> Callable[[TargetRow, Mapping[str, JsonValue], ReferenceResolver], None]:
    """Company striping for rows written into `into`: the company code from the source row (or its lookup)."""
    assert m.company is not None
    source_field = m.company_field(into.other)
    label = f"{source_field or 'company'}: the company is missing or unknown"
    default, optional = m.company.default, into is Side.DATAVERSE and m.company.dataverse is None
    fno_key = m.company.fno if into is Side.FNO else None
    dataverse_key = m.company.dataverse if into is Side.DATAVERSE else None
    companies, code_column = m.company.table_entity_set, m.company.code

    def stripe(row: TargetRow, record: Mapping[str, JsonValue], resolve: ReferenceResolver) -> None:
        value = record.get(source_field) if source_field else None
        code: str | None = None
        if isinstance(value, str) and value:
            code = value
        elif isinstance(value, dict) and value.get("$type") == "lookup" and value.get("id"):
            code = resolve.company_code(str(value["id"]))
        code = code or default
        if code is None:
            if not optional:
                row.errors.append(label)
            return
        row.company = code.lower()
        if fno_key is not None:
            row.key[fno_key] = row.company
        elif dataverse_key is not None:
            upper = code.upper()
            row.key[dataverse_key] = upper
            row.lookups[dataverse_key] = _new_lookup_ref(("companies", companies, {code_column: upper}))

    return stripe


def _copier(pairs: tuple[tuple[str, str], ...]) -> Callable[[Mapping[str, JsonValue]], dict[str, JsonValue]]:
    """The plain copies of a record as a new dict: a whole record is fetched in one C call (`itemgetter`) and only a
    partial one (an update that carries some fields) is walked field by field."""
    origins = tuple(origin for origin, _ in pairs)
    targets = tuple(target for _, target in pairs)
    if not pairs:
        return lambda record: {}
    fetch = itemgetter(*origins) if len(origins) > 1 else (lambda record: (record[origins[0]],))

    def copy(record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            return dict(zip(targets, fetch(record), strict=False))  # same length by construction
        except KeyError:
            return {target: record[origin] for origin, target in pairs if origin in record}

    return copy


def passes_filter(compiled: CompiledMap, side: Side, record: Mapping[str, JsonValue]) -> bool:
    run = compiled.filter_runs.get(side)
    return True if run is None else _passes(run, record)


def _passes(run: Callable[[Mapping[str, JsonValue]], Any], record: Mapping[str, JsonValue]) -> bool:
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
    # No enum hashing or Enum attributes on this path: each costs a Python-level call in 3.11.
    plan = compiled.into_dataverse if source is _FNO else compiled.into_fno
    resolve = resolver or _NO_RESOLVER
    passes = True
    if plan.source_filter is not None:
        try:
            passes = bool(plan.source_filter(record))
        except ExpressionError:
            passes = False
    row = TargetRow(  # positional, containers given: the dataclass's keyword and factory handling cost a tenth
        compiled.map.name,
        plan.into,
        plan.entity_set,
        {},
        plan.copy(record),
        {},
        None,
        passes,
        [],
        [],
    )
    if plan.company is not None:
        plan.company(row, record, resolve)
    if plan.constants:
        row.values.update(plan.constants)
    for label, step in plan.steps:
        try:
            step(row, record, maps, resolve)
        except (TransformError, ExpressionError, ValueError) as exc:
            row.errors.append(f"{label}: {exc}")
    return row


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
