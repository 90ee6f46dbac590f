"""F&O notifications → `ChangeEvent`s. Pure. Three forms (../shared/reference/fno.md):

(a) data events: a RemoteExecutionContext on a `mserp_*` virtual table, `OnExternalCreated/Updated/Deleted`;
(b) business events: the F&O envelope plus the event's own fields, made a row change by a `BusinessEventBinding`;
(c) a JSON array of either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.events.body import decode_json
from shared.events.dataverse import is_execution_context, parse_context
from shared.events.enums import EnumSymbols, decode_choices
from shared.events.errors import InvalidNotification
from shared.events.model import ChangeEvent, Ignored, Operation, Side, event_id
from shared.events.values import decimal_value, is_wcf_date, pairs, parse_wcf_date, text_member

DATA_EVENT_OPERATIONS = {
    "OnExternalCreated": Operation.CREATE,
    "OnExternalUpdated": Operation.UPDATE,
    "OnExternalDeleted": Operation.DELETE,
}
TEST_EVENT_ID = "BusinessEventsTestEndpointContract"
VIRTUAL_PREFIX = "mserp_"
ENVELOPE_FIELDS = frozenset(
    {
        "BusinessEventId", "BusinessEventLegalEntity", "ContextRecordSubject", "ControlNumber", "EventId",
        "EventTime", "EventTimeIso8601", "InitiatingUserAADObjectId", "MajorVersion", "MinorVersion",
        "ParentContextRecordSubjects",
    }
)  # fmt: skip


# --- names: virtual tables back to data entities ------------------------------------------------------------------


@dataclass(frozen=True)
class FnoEntityNames:
    """How one data entity appears as a virtual table: its real name and its fields' real spelling."""

    entity: str
    fields: Mapping[str, str] = field(default_factory=dict)  # lower-case name → real name
    keys: Sequence[str] = ()


class FnoCatalog(Protocol):
    def for_virtual_table(self, table: str) -> FnoEntityNames | None: ...


class NoCatalog:
    """Used until table maps name the entities: the virtual table's own names, prefix removed."""

    def for_virtual_table(self, table: str) -> FnoEntityNames | None:
        return None


# --- business event bindings -------------------------------------------------------------------------------------


class BusinessEventBinding(BaseModel):
    """Which business event means which row change of which entity."""

    model_config = ConfigDict(extra="forbid")

    business_event_id: str = Field(min_length=1)
    entity: str = Field(min_length=1, description="The data entity the event is about, e.g. SalesOrderHeadersV2")
    operation: Operation = Operation.UPDATE
    keys: list[str] = Field(min_length=1, description="Payload fields that identify the row (the company is added)")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Payload field → entity field; empty: every payload field as it is"
    )
    company_field: str = "BusinessEventLegalEntity"


# --- parsing ------------------------------------------------------------------------------------------------------


def _plain(value: Any, where: str) -> JsonValue:
    """A business event's own JSON value → canonical (exact decimals, /Date()/ strings as date-times)."""
    if isinstance(value, Decimal | float):
        return decimal_value(value)
    if isinstance(value, str) and is_wcf_date(value):
        return {"$type": "datetime", "value": parse_wcf_date(value, where).astimezone(UTC).isoformat()}
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    return value  # type: ignore[no-any-return]


def _event_time(event: dict[str, Any], where: str) -> datetime:
    iso = text_member(event, "EventTimeIso8601", where)
    if iso:
        try:
            # 7 fractional digits: Python takes at most 6
            head, _, rest = iso.partition(".")
            if rest:
                digits = "".join(c for c in rest if c.isdigit())
                zone = rest[len(digits) :] or "+00:00"
                iso = f"{head}.{digits[:6]}{zone}"
            return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):
            raise InvalidNotification(
                f"{where}.EventTimeIso8601: {event['EventTimeIso8601'][:80]!r} is not an ISO 8601 date-time"
            ) from None
    raw = text_member(event, "EventTime", where)
    if raw:
        return parse_wcf_date(raw, f"{where}.EventTime").astimezone(UTC)
    return datetime.now(UTC)


def is_business_event(document: Any) -> bool:
    return isinstance(document, dict) and "BusinessEventId" in document


def parse_business_event(
    event: dict[str, Any], bindings: Mapping[str, BusinessEventBinding], where: str = "body"
) -> ChangeEvent | Ignored:
    business_event_id = text_member(event, "BusinessEventId", where) or ""
    if business_event_id == TEST_EVENT_ID:
        return Ignored("the business events endpoint test message", test=True)
    binding = bindings.get(business_event_id)
    if binding is None:
        return Ignored(f"no binding for business event {business_event_id!r}")
    company = (text_member(event, binding.company_field, where) or "").lower() or None
    payload = {k: v for k, v in event.items() if k not in ENVELOPE_FIELDS}
    renamed = {binding.fields.get(k, k): v for k, v in payload.items() if not binding.fields or k in binding.fields}
    fields = {k: _plain(v, f"{where}.{k}") for k, v in renamed.items()}
    keys: dict[str, JsonValue] = {}
    for key in binding.keys:
        name = binding.fields.get(key, key)
        if key not in event or event[key] in (None, ""):
            raise InvalidNotification(f"{where}: business event {business_event_id} lacks its key field {key!r}")
        if not isinstance(event[key], str | int | Decimal) or isinstance(event[key], bool):
            raise InvalidNotification(
                f"{where}.{key}: business event {business_event_id}'s key field must be text or a number,"
                f" not {type(event[key]).__name__}"
            )
        keys[name] = fields.get(name, _plain(event[key], f"{where}.{key}"))
    if company is not None:
        keys = {"dataAreaId": company, **keys}
    row_id = "|".join(f"{k}={v}" for k, v in keys.items())
    control = event.get("ControlNumber")
    if control is not None and (not isinstance(control, int | str) or isinstance(control, bool)):
        raise InvalidNotification(f"{where}.ControlNumber: expected a number, got {type(control).__name__}")
    raw_event_id = (text_member(event, "EventId", where) or "").strip("{}").lower() or None
    user = (text_member(event, "InitiatingUserAADObjectId", where) or "").strip("{}").lower() or None
    return ChangeEvent(
        event_id=event_id(Side.FNO, "business-event", business_event_id, raw_event_id, control, row_id),
        source=Side.FNO,
        entity=binding.entity,
        operation=binding.operation,
        row_id=row_id,
        keys=keys,
        company=company,
        fields=fields,
        changed_fields=list(fields),
        source_version=str(control) if control is not None else None,
        occurred_at=_event_time(event, where),
        initiating_user=None if user == "00000000-0000-0000-0000-000000000000" else user,
        correlation_id=raw_event_id,
    )


def parse_data_event(
    context: dict[str, Any], headers: Mapping[str, str], catalog: FnoCatalog, symbols: EnumSymbols | None = None
) -> ChangeEvent | Ignored:
    """An `OnExternal*` RemoteExecutionContext on a virtual table → a change of the data entity behind it."""
    parsed = parse_context(context, headers, Side.FNO, DATA_EVENT_OPERATIONS)
    if isinstance(parsed, Ignored):
        return parsed
    table = parsed.entity.lower()
    # Virtual tables carry F&O enums as option-set values (200000000 + …), numbers that mean nothing without the
    # environment's metadata: decoded to their symbols (`shared.events.enums`) where it is known; else kept as sent,
    # and apply re-reads the row through OData, where enums are symbols.
    names = catalog.for_virtual_table(table)
    # Only a table a map reads: any other is ignored by ingest anyway, and must not cost a metadata read.
    decoded = decode_choices(table, parsed.fields, symbols) if names is not None else None
    bare = table[len(VIRTUAL_PREFIX) :] if table.startswith(VIRTUAL_PREFIX) else table

    def real(name: str) -> str:
        lower = name.lower()
        stripped = lower[len(VIRTUAL_PREFIX) :] if lower.startswith(VIRTUAL_PREFIX) else lower
        if stripped == "dataareaid":
            return "dataAreaId"
        return names.fields.get(stripped, stripped) if names else stripped

    sent = parsed.fields if decoded is None else decoded
    fields = {real(k): v for k, v in sent.items() if k.lower() != f"{table}id"}
    company_value = fields.get("dataAreaId")
    if company_value is not None and not isinstance(company_value, str):
        raise InvalidNotification(f"{table}: mserp_dataareaid must be a company code, not {company_value!r:.60}")
    company = company_value.lower() if company_value else None
    keys: dict[str, JsonValue] = {}
    if names and names.keys:
        keys = {k: fields[k] for k in names.keys if k in fields}
    return parsed.model_copy(
        update={
            "entity": names.entity if names else bare,
            "fields": fields,
            "changed_fields": [real(k) for k in parsed.changed_fields if k.lower() != f"{table}id"],
            "company": company,
            "keys": keys,
            "reread_required": parsed.reread_required or decoded is None,
        }
    )


def _one(
    document: Any,
    headers: Mapping[str, str],
    bindings: Mapping[str, BusinessEventBinding],
    catalog: FnoCatalog,
    where: str,
    symbols: EnumSymbols | None = None,
) -> ChangeEvent | Ignored:
    if is_business_event(document):
        return parse_business_event(document, bindings, where)
    if is_execution_context(document):
        message = document.get("MessageName")
        if not isinstance(message, str):
            raise InvalidNotification(f"{where}.MessageName: expected a message name, got {type(message).__name__}")
        if message in DATA_EVENT_OPERATIONS:
            return parse_data_event(document, headers, catalog, symbols)
        # Business events routed through Dataverse arrive wrapped in a context: find the event inside.
        for value in pairs(document.get("InputParameters"), f"{where}.InputParameters").values():
            inner = value
            if isinstance(value, str) and "BusinessEventId" in value:
                inner = decode_json(value.encode("utf-8"), "F&O")
            if is_business_event(inner):
                return parse_business_event(inner, bindings, where)
        return Ignored(
            f"message {message!r} is not an F&O data event", text_member(document, "PrimaryEntityName", where)
        )
    raise InvalidNotification(
        f"{where}: neither an F&O business event (BusinessEventId) nor a data event (RemoteExecutionContext)"
    )


def parse_fno(
    body: bytes,
    headers: Mapping[str, str],
    bindings: Mapping[str, BusinessEventBinding],
    catalog: FnoCatalog | None = None,
    symbols: EnumSymbols | None = None,
) -> list[ChangeEvent | Ignored]:
    """`symbols`: the virtual tables' enum options known so far (what it misses, it records)."""
    document = decode_json(body, "F&O")
    lowered = {k.lower(): v for k, v in headers.items()}
    names = catalog or NoCatalog()
    if isinstance(document, list):
        if not document:
            raise InvalidNotification("an empty array: nothing to sync")
        return [_one(item, lowered, bindings, names, f"body[{i}]", symbols) for i, item in enumerate(document)]
    return [_one(document, lowered, bindings, names, "body", symbols)]
