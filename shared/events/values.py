"""Dataverse's JSON value encodings (RemoteExecutionContext) → canonical `ChangeEvent` values."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from pydantic import JsonValue

from shared.events.errors import InvalidNotification

_WCF_DATE = re.compile(r"^/Date\((-?\d{1,16})([+-]\d{4})?\)/$")  # ms since 1970, an optional UTC offset


def parse_wcf_date(text: str, where: str = "date") -> datetime:
    """`/Date(1506384247000)/` or `/Date(1506409448000-0700)/` → an aware datetime (ms since epoch are UTC)."""
    m = _WCF_DATE.match(text.strip())
    if m is None:
        raise InvalidNotification(f"{where}: {text[:80]!r} is not a /Date(ms)/ value")
    millis, offset = int(m.group(1)), m.group(2)
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
        if offset:
            sign = 1 if offset[0] == "+" else -1
            zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
            moment = moment.astimezone(zone)
        moment.astimezone(UTC)  # every caller wants UTC: out of range there is out of range here
    except (OverflowError, ValueError):
        raise InvalidNotification(f"{where}: {text!r} is outside the dates a datetime can hold") from None
    return moment


def is_wcf_date(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/Date(") and _WCF_DATE.match(value) is not None


def _kind(value: dict[str, Any]) -> str:
    return str(value.get("__type", "")).split(":", 1)[0]


def decimal_value(number: Decimal | float | int) -> JsonValue:
    if isinstance(number, bool):
        return number
    if isinstance(number, int):
        return number
    exact = number if isinstance(number, Decimal) else Decimal(repr(number))
    return {"$type": "decimal", "value": format(exact, "f")}


def canonical(value: Any, where: str) -> JsonValue:
    """One attribute value in Dataverse's webhook encoding → its canonical form (see `shared.events.model`)."""
    if value is None or (isinstance(value, bool | str) and not is_wcf_date(value)):
        return value
    if isinstance(value, str):
        return {"$type": "datetime", "value": parse_wcf_date(value, where).astimezone(UTC).isoformat()}
    if isinstance(value, int | float | Decimal):
        return decimal_value(value)
    if isinstance(value, list):
        if all(isinstance(v, dict) and _kind(v) == "OptionSetValue" for v in value):
            return {"$type": "choices", "values": [_option(v, where) for v in value]}
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        kind = _kind(value)
        if kind == "OptionSetValue" or (not kind and set(value) == {"Value"} and isinstance(value["Value"], int)):
            return {"$type": "choice", "value": _option(value, where)}
        if kind == "Money":
            amount = value.get("Value")
            if not isinstance(amount, int | float | Decimal) or isinstance(amount, bool):
                raise InvalidNotification(f"{where}: Money without a numeric Value")
            return {"$type": "money", "value": format(Decimal(str(amount)), "f")}
        if kind == "EntityReference" or (
            not kind and "LogicalName" in value and "Id" in value and "Attributes" not in value
        ):
            return {
                "$type": "lookup",
                "table": text_member(value, "LogicalName", where),
                "id": _guid(text_member(value, "Id", where)),
                "name": text_member(value, "Name", where),
            }
        if kind == "EntityCollection":
            entities = value.get("Entities") or []
            if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
                raise InvalidNotification(f"{where}.Entities: expected a list of entities")
            return {
                "$type": "entities",
                "entities": [entity_value(e, f"{where}.Entities[{i}]") for i, e in enumerate(entities)],
            }
        if kind == "Entity" or "Attributes" in value:
            return entity_value(value, where)
        return {str(k): canonical(v, f"{where}.{k}") for k, v in value.items()}
    raise InvalidNotification(f"{where}: unsupported value {value!r}")


def _option(value: dict[str, Any], where: str) -> int:
    number = value.get("Value")
    if not isinstance(number, int) or isinstance(number, bool):
        raise InvalidNotification(f"{where}: OptionSetValue without an integer Value")
    return number


def _guid(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def text_member(node: dict[str, Any], name: str, where: str) -> str | None:
    """A member that the contract types as a string (a name, a GUID, a version): a string or null, else refused."""
    value = node.get(name)
    if value is None or isinstance(value, str):
        return value
    raise InvalidNotification(f"{where}.{name}: expected a string, got {type(value).__name__} {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def entity_value(entity: dict[str, Any], where: str) -> JsonValue:
    return {
        "table": text_member(entity, "LogicalName", where),
        "id": _guid(text_member(entity, "Id", where)),
        "fields": attributes(entity, where),
    }


def pairs(items: Any, where: str) -> dict[str, Any]:
    """Dataverse's `[{"key": …, "value": …}]` dictionaries → a dict (a missing list is an empty dict)."""
    if items is None:
        return {}
    if isinstance(items, dict):  # tolerate a plain object where a pair list is documented
        return dict(items)
    if not isinstance(items, list):
        raise InvalidNotification(f"{where}: expected a list of key/value pairs")
    out: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "key" not in item:
            raise InvalidNotification(f'{where}[{i}]: expected {{"key": …, "value": …}}')
        key = item["key"]
        if not isinstance(key, str):
            raise InvalidNotification(f"{where}[{i}].key: expected a string, got {type(key).__name__}")
        if key in out:  # a ParameterCollection / AttributeCollection is a dictionary: one value per key
            raise InvalidNotification(f"{where}: the key {key[:80]!r} appears twice")
        out[key] = item.get("value")
    return out


def attributes(entity: dict[str, Any], where: str) -> dict[str, JsonValue]:
    raw = pairs(entity.get("Attributes"), f"{where}.Attributes")
    return {name: canonical(value, f"{where}.Attributes.{name}") for name, value in raw.items()}
