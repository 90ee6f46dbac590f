"""The `$filter` subset the connectors and the registration tool use: comparisons (eq ne gt ge lt le), and / or /
not, parentheses, `contains` / `startswith` / `endswith`, string, number, boolean, null, GUID and F&O enum
literals (`Microsoft.Dynamics.DataEntities.NoYes'Yes'`). Parsed into a predicate over a row's values."""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>(?:[\w.]+)?'(?:[^']|'')*')|(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
    r"[0-9a-fA-F]{12})|(?P<num>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_@][\w/@.]*)|(?P<punct>[(),]))"
)


class FilterError(ValueError):
    pass


class UnknownName(FilterError):
    """A name the entity type does not have (the apps answer 400, never an empty result)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected text at {pos}: {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _compare(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, bool) or isinstance(b, bool):
        return a, b
    try:
        if isinstance(a, int | float | Decimal) or isinstance(b, int | float | Decimal):
            return Decimal(str(a)), Decimal(str(b))
    except InvalidOperation:
        pass
    if isinstance(a, str) and isinstance(b, str):
        return a.lower(), b.lower()
    return a, b


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}


class _Parser:
    def __init__(
        self, text: str, resolve: Callable[[Mapping[str, Any], str], Any], names: Container[str] | None = None
    ) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.resolve = resolve
        self.names = names

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError("unexpected end of $filter")
        self.i += 1
        return token

    def expect(self, value: str) -> None:
        _, got = self.take()
        if got != value:
            raise FilterError(f"expected {value!r}, found {got!r}")

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return predicate

    def disjunction(self) -> Predicate:
        left = self.conjunction()
        while self.peek() == ("name", "or"):
            self.take()
            right = self.conjunction()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self.peek() == ("name", "and"):
            self.take()
            right = self.unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def unary(self) -> Predicate:
        if self.peek() == ("name", "not"):
            self.take()
            inner = self.unary()
            return lambda row: not inner(row)
        if self.peek() == ("punct", "("):
            self.take()
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.comparison()

    def operand(self) -> Callable[[Mapping[str, Any]], Any]:
        kind, text = self.take()
        if kind == "str":
            literal = text[text.index("'") + 1 : -1].replace("''", "'")
            return lambda row: literal
        if kind == "guid":
            return lambda row: text.lower()
        if kind == "num":
            value = Decimal(text)
            return lambda row: value
        if kind == "name":
            if text in ("true", "false"):
                return lambda row: text == "true"
            if text == "null":
                return lambda row: None
            if self.names is not None and text not in self.names:
                raise UnknownName(text)
            return lambda row: self.resolve(row, text)
        raise FilterError(f"unexpected {text!r}")

    def comparison(self) -> Predicate:
        kind, text = self.peek() or ("", "")
        if kind == "name" and text in ("contains", "startswith", "endswith"):
            self.take()
            self.expect("(")
            field = self.operand()
            self.expect(",")
            needle = self.operand()
            self.expect(")")

            def function(row: Mapping[str, Any]) -> bool:
                hay, pin = field(row), needle(row)
                if not isinstance(hay, str) or not isinstance(pin, str):
                    return False
                hay, pin = hay.lower(), pin.lower()
                return (
                    pin in hay
                    if text == "contains"
                    else hay.startswith(pin)
                    if text == "startswith"
                    else hay.endswith(pin)
                )

            return function
        left = self.operand()
        _, op = self.take()
        if op not in _OPS:
            raise FilterError(f"unsupported operator {op!r}")
        right = self.operand()
        compare = _OPS[op]
        return lambda row: compare(*_compare(left(row), right(row)))


def parse_filter(
    text: str, resolve: Callable[[Mapping[str, Any], str], Any] | None = None, names: Container[str] | None = None
) -> Predicate:
    """`names`: the properties the entity type has; any other name raises `UnknownName` while parsing."""
    return _Parser(text, resolve or (lambda row, name: row.get(name)), names).parse()


def parse_orderby(text: str, names: Container[str] | None = None) -> list[tuple[str, bool]]:
    """`a desc, b` → [(a, descending), (b, ascending)]."""
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise FilterError(f"invalid $orderby clause {part.strip()!r}")
        if names is not None and words[0] not in names:
            raise UnknownName(words[0])
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order


def sort_key(value: Any) -> tuple[int, Any]:
    """Nulls first (OData: null is the smallest value), text without regard to case, numbers as numbers."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float | Decimal):
        return (1, Decimal(str(value)))
    return (2, str(value).lower())


def sort_rows(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    out = list(rows)
    for name, descending in reversed(order):  # stable sorts, last key first
        out.sort(key=lambda row: sort_key(row.get(name)), reverse=descending)
    return out
