"""A notification's bytes → a JSON document we can safely walk, or an `InvalidNotification` saying why not.

Strict where RFC 8259 and the senders are: UTF-8 only, no NaN/Infinity, no duplicate member names (both apps
serialize dictionaries, so a repeated name never comes from them and would leave us guessing which value counts).
Bounded where Python is not: nesting depth, number size (a `1e999999999` would otherwise be expanded digit by digit),
and strings that cannot be re-encoded as UTF-8 (a lone `\\ud800` escape), which could be neither queued nor logged.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from shared.events.errors import InvalidNotification

MAX_DEPTH = 64  # a RemoteExecutionContext with a full ParentContext chain nests about 30 deep
MAX_NUMBER_DIGITS = 100  # Dataverse decimals hold 10 places, money 4, F&O reals 32 digits
# A lone surrogate can only come from a `\uD800`-`\uDFFF` escape (text decoded from UTF-8 holds none): without one in
# the body, no string needs checking — the check of every string was most of the cost of decoding a notification.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(body: bytes, source: str) -> Any:
    """The body as JSON: UTF-8 from bytes (BOM tolerated), decimals kept exact."""
    if not body.strip():
        raise InvalidNotification(f"the {source} notification body is empty")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidNotification(
            f"the body is not UTF-8 (byte {exc.start}); set the endpoint's charset to UTF8"
        ) from None
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    try:
        document = json.loads(
            text,
            parse_float=_decimal,
            parse_int=_integer,
            parse_constant=_constant,
            object_pairs_hook=_object if surrogates else _object_unique,
        )
    except json.JSONDecodeError as exc:
        raise InvalidNotification(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidNotification(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(document, surrogates)
    return document


def _decimal(text: str) -> Decimal:
    number = Decimal(text)
    if len(text) > MAX_NUMBER_DIGITS or abs(number.adjusted()) > MAX_NUMBER_DIGITS:
        raise InvalidNotification(f"the number {text[:40]}… is out of range (over {MAX_NUMBER_DIGITS} digits)")
    return number


def _integer(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise InvalidNotification(f"the number {text[:40]}… is out of range (over {MAX_NUMBER_DIGITS} digits)")
    return int(text)


def _constant(name: str) -> Any:
    raise InvalidNotification(f"malformed JSON: {name} is not a JSON number")


def _text(value: str, what: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNotification(
            f"malformed JSON: {what} {value[:40]!r} holds a lone UTF-16 surrogate (character {exc.start})"
        ) from None
    return value


def _object(members: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in members:
        if name in found:
            raise InvalidNotification(f"malformed JSON: the member {name[:80]!r} appears twice in one object")
        if isinstance(value, str):
            _text(value, f"the value of {name[:80]!r}")
        found[_text(name, "the member name")] = value
    return found


def _object_unique(members: list[tuple[str, Any]]) -> dict[str, Any]:
    """`_object` for a body without surrogate escapes: only repeated names to look for."""
    found = dict(members)
    if len(found) != len(members):
        return _object(members)  # raises, naming the repeated member
    return found


def _check_depth(document: Any, surrogates: bool = True) -> None:
    """Depth and top-level/array strings, without recursion (object members were checked as they were read)."""
    level: list[Any] = [document]
    depth = 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise InvalidNotification(f"the body nests deeper than {MAX_DEPTH} levels")
        following: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                following.extend(v for v in node.values() if isinstance(v, dict | list))
            elif isinstance(node, list):
                for item in node:
                    if isinstance(item, str):
                        if surrogates:
                            _text(item, "the array item")
                    elif isinstance(item, dict | list):
                        following.append(item)
            elif isinstance(node, str) and surrogates:
                _text(node, "the body")
        level = following
