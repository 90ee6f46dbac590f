"""OData JSON on the wire: exact decimals both ways, key literals in URLs, canonical values → request bodies."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from pydantic import JsonValue

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


_DECODER = json.JSONDecoder(parse_float=Decimal)  # one, not one per call (what `json.loads(…, parse_float=…)` makes)


def loads(data: bytes | str) -> Any:
    """JSON with decimals kept exact (money must never pass through a float)."""
    if not isinstance(data, str):
        data = data.decode(json.detect_encoding(data), "surrogatepass")  # as `json.loads` reads bytes
    return _DECODER.decode(data)


_DECIMAL_MARK = "\x00\x01decimal:"
_MARKED = '"\\u0000\\u0001decimal:'  # how a marked string begins in the JSON text


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return _DECIMAL_MARK + format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON")


# Made once (`json.dumps` makes an encoder per call when given options).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_decimal)


def dumps(value: Any) -> str:
    """JSON where a Decimal is written as the number it is, digit for digit. Encoded in one C call (bulk writes
    encode thousands of bodies): a Decimal goes through as a marked string, then loses its quotes and its mark."""
    if isinstance(value, dict | list):
        try:
            text = _ENCODER.encode(value)
        except TypeError:
            pass
        else:
            if _MARKED not in text:
                return text
            # Each piece after a mark is `<digits>"<the rest>`: the digits without the quote that closed the string.
            # (Split, not a regular expression: one would be tried at every quote of the body.)
            first, *marked = text.split(_MARKED)
            return first + "".join(digits + rest for digits, _, rest in (piece.partition('"') for piece in marked))
    return _dumps(value)


def _dumps(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def literal(value: Any) -> str:
    """A value as an OData URL literal: strings quoted with inner quotes doubled, GUIDs bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)  # a lookup column inside an alternate key: a bare GUID
    text = str(value)
    return "'" + text.replace("'", "''") + "'"


def key_segment(key: Mapping[str, Any] | str) -> str:
    """`(a='x',b='y')` for a named key, `(guid)` for a Dataverse row id; percent-encoded for the path."""
    if isinstance(key, str):
        if not _GUID.match(key):
            raise ValueError(f"{key!r} is not a row id (GUID)")
        return f"({key})"
    if not key:
        raise ValueError("an empty key names no row")
    inner = ",".join(f"{name}={literal(value)}" for name, value in key.items())
    return "(" + quote(inner, safe="=,'()@$:-._~") + ")"


def to_wire(value: JsonValue) -> Any:
    """A canonical value (see `shared.events.model`) as OData JSON."""
    if isinstance(value, dict):
        kind = value.get("$type")
        if kind in ("decimal", "money"):
            return Decimal(str(value["value"]))
        if kind == "choice":
            return value.get("value")
        if kind == "choices":
            values = value.get("values") or []
            return ",".join(str(v) for v in values) if isinstance(values, list) else values
        if kind == "datetime":
            return str(value.get("value", "")).replace("+00:00", "Z")
        if kind == "lookup":
            return value.get("id")
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    return value


def etag_version(etag: str | None) -> str | None:
    """The row version an ETag stands for. Dataverse: `W/"468026"` → "468026", the row's `versionnumber`, which only
    grows. F&O: `W/"<base64 of '<RecVersion>,<RecId>'>"` (`;` between the entity's tables) → that text as it is, an
    opaque token: the RecId never changes and RecVersion becomes a random number on every update ("Optimistic
    Concurrency Control", Dynamics AX docs), so two F&O ETags tell only whether the row changed, never which state is
    newer (`decide.is_newer` treats a token that is not a number as newer: an F&O change is read as the row is now)."""
    if not etag:
        return None
    inner = etag.removeprefix("W/").strip('"')
    if inner.isdigit():
        return inner
    import base64
    import binascii

    try:
        decoded = base64.b64decode(inner + "=" * (-len(inner) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    token = decoded.strip("'")
    return token or None
