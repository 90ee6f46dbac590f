"""A small, safe expression language for derived values and filters: parsed and checked at load time, no `eval`.

    expression := literal | field | field::Symbol | function(args…) | unary | binary | ( expression )
    literal    := 'text' | "text" | 12 | 3.5 | true | false | null
    operators  := or  and  not  ==  !=  <  <=  >  >=  +  -  *  /   (also ||  &&  !)
    functions  := concat upper lower trim left right substring split replace coalesce len if round
                  contains startswith endswith

`Enum::Value` (F&O's query-range style, e.g. `PartyType == PartyType::Organization`) is the text 'Value'.
Values are plain: text, whole numbers, exact decimals, booleans, null; a choice is its number, a lookup its id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

Value = Any


class ExpressionError(ValueError):
    """An expression that does not parse, uses what it may not, or fails on a value."""


# --- syntax tree -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Value


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | Field | Call | Unary | Binary


@dataclass(frozen=True)
class Expression:
    source: str
    tree: Node
    fields: frozenset[str]  # every field the expression reads, known before it runs
    run: Callable[[Mapping[str, Value]], Value]  # the tree compiled to closures, once

    def evaluate(self, record: Mapping[str, Value]) -> Value:
        return self.run(record)

    def reading(self, read: Callable[[Value], Value]) -> Callable[[Mapping[str, Value]], Value]:
        """The expression over raw records, each field value passed through `read` first (no view to build)."""
        return _compile(self.tree, read)


def _fields(node: Node) -> set[str]:
    if isinstance(node, Field):
        return {node.name}
    if isinstance(node, Call):
        return set().union(*(_fields(a) for a in node.args)) if node.args else set()
    if isinstance(node, Unary):
        return _fields(node.operand)
    if isinstance(node, Binary):
        return _fields(node.left) | _fields(node.right)
    return set()


# --- tokens ------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+(?:\.\d+)?)
      | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)?)
      | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/<>(),!])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"unexpected character {source[pos:].strip()[0]!r} at {pos + 1}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "name" and text.lower() in _KEYWORDS:
            kind, text = "op", _KEYWORDS[text.lower()]
        out.append(_Token(kind, text, m.start(kind) + 1))
        pos = m.end()
    out.append(_Token("end", "", len(source) + 1))
    return out


# --- parser (precedence climbing) --------------------------------------------------------------------------------

_BINARY = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "+": 4, "-": 4, "*": 5, "/": 5}


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text:
            raise ExpressionError(f"expected {text!r} at {token.pos}, found {token.text or 'the end'!r}")

    def parse(self) -> Node:
        node = self.binary(1)
        if self.peek().kind != "end":
            raise ExpressionError(f"unexpected {self.peek().text!r} at {self.peek().pos}")
        return node

    def binary(self, level: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            precedence = _BINARY.get(token.text) if token.kind == "op" else None
            if precedence is None or precedence < level:
                return left
            self.take()
            right = self.binary(precedence + 1)
            left = Binary(token.text, left, right)

    def unary(self) -> Node:
        token = self.peek()
        if token.kind == "op" and token.text in ("!", "-"):
            self.take()
            return Unary(token.text, self.unary())
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "number":
            return Literal(Decimal(token.text) if "." in token.text else int(token.text))
        if token.kind == "string":
            quote, body = token.text[0], token.text[1:-1]
            return Literal(body.replace(quote * 2, quote).replace("\\" + quote, quote).replace("\\\\", "\\"))
        if token.kind == "name":
            lowered = token.text.lower()
            if lowered in ("true", "false"):
                return Literal(lowered == "true")
            if lowered == "null":
                return Literal(None)
            if "::" in token.text:
                return Literal(token.text.split("::", 1)[1])
            if self.peek().text == "(":
                self.take()
                args: list[Node] = []
                if self.peek().text != ")":
                    args.append(self.binary(1))
                    while self.peek().text == ",":
                        self.take()
                        args.append(self.binary(1))
                self.expect(")")
                return self.call(token, tuple(args))
            return Field(token.text)
        if token.text == "(":
            node = self.binary(1)
            self.expect(")")
            return node
        raise ExpressionError(f"unexpected {token.text or 'end'!r} at {token.pos}")

    def call(self, token: _Token, args: tuple[Node, ...]) -> Call:
        name = token.text.lower()
        arity = _ARITY.get(name)
        if arity is None:
            raise ExpressionError(
                f"unknown function {token.text!r} at {token.pos} (known: {', '.join(sorted(_ARITY))})"
            )
        low, high = arity
        if not low <= len(args) <= high:
            wanted = f"{low}" if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
            raise ExpressionError(f"{name}() takes {wanted} arguments, got {len(args)} (at {token.pos})")
        return Call(name, args)


def parse(source: str) -> Expression:
    if not source or not source.strip():
        raise ExpressionError("empty expression")
    tree = _Parser(source).parse()
    return Expression(source, tree, frozenset(_fields(tree)), _compile(tree, _identity))


# --- evaluation --------------------------------------------------------------------------------------------------


def _text(v: Value) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _number(v: Value, what: str) -> Decimal | int:
    if isinstance(v, bool) or v is None:
        raise ExpressionError(f"{what}: {v!r} is not a number")
    if isinstance(v, int | Decimal):
        return v
    try:
        return Decimal(str(v))
    except InvalidOperation:
        raise ExpressionError(f"{what}: {v!r} is not a number") from None


def _split(s: Value, sep: Value, index: Value) -> Value:
    parts = _text(s).split(_text(sep)) if _text(sep) else [_text(s)]
    i = int(_number(index, "split index"))
    return parts[i] if -len(parts) <= i < len(parts) else None


def _round(v: Value, places: Value = 0) -> Value:
    n = _number(v, "round")
    return Decimal(n).quantize(Decimal(1).scaleb(-int(_number(places, "round places"))))


_FUNCTIONS: dict[str, Callable[..., Value]] = {
    "concat": lambda *a: "".join(_text(x) for x in a),
    "upper": lambda s: None if s is None else _text(s).upper(),
    "lower": lambda s: None if s is None else _text(s).lower(),
    "trim": lambda s: None if s is None else _text(s).strip(),
    "left": lambda s, n: None if s is None else _text(s)[: int(_number(n, "left"))],
    "right": lambda s, n: (
        None if s is None else (_text(s)[-int(_number(n, "right")) :] if int(_number(n, "right")) else "")
    ),
    "substring": lambda s, start, n=None: (
        None
        if s is None
        else _text(s)[
            int(_number(start, "substring")) : None
            if n is None
            else int(_number(start, "substring")) + int(_number(n, "substring"))
        ]
    ),
    "split": _split,
    "replace": lambda s, a, b: None if s is None else _text(s).replace(_text(a), _text(b)),
    "coalesce": lambda *a: next((x for x in a if x not in (None, "")), None),
    "len": lambda s: 0 if s is None else len(_text(s)),
    "round": _round,
    "contains": lambda s, t: _text(t) in _text(s),
    "startswith": lambda s, t: _text(s).startswith(_text(t)),
    "endswith": lambda s, t: _text(s).endswith(_text(t)),
}
_ARITY = {
    "concat": (1, 99), "upper": (1, 1), "lower": (1, 1), "trim": (1, 1), "left": (2, 2), "right": (2, 2),
    "substring": (2, 3), "split": (3, 3), "replace": (3, 3), "coalesce": (1, 99), "len": (1, 1), "if": (3, 3),
    "round": (1, 2), "contains": (2, 2), "startswith": (2, 2), "endswith": (2, 2),
}  # fmt: skip


def _compare(op: str, a: Value, b: Value) -> bool:
    if isinstance(a, int | Decimal) and not isinstance(a, bool) and isinstance(b, str):
        b = _number(b, "comparison")
    if isinstance(b, int | Decimal) and not isinstance(b, bool) and isinstance(a, str):
        a = _number(a, "comparison")
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])
    except TypeError:
        raise ExpressionError(f"cannot compare {a!r} {op} {b!r}") from None


def _identity(value: Value) -> Value:
    return value


def _field_compared(
    name: str, constant: Value, op: str, read: Callable[[Value], Value]
) -> Callable[[Mapping[str, Value]], Value]:
    """`field == literal` (or `!=`), the usual filter, as one closure: what `compare_equal` does over two calls."""
    equal = op == "=="
    kind = type(constant)

    def field_compared(record: Mapping[str, Value]) -> Value:
        a = read(record.get(name))
        if type(a) is kind or a is None or constant is None:
            return (a == constant) is equal
        return _compare(op, a, constant)

    return field_compared


def _compile(node: Node, read: Callable[[Value], Value]) -> Callable[[Mapping[str, Value]], Value]:
    """The tree as nested closures: the same semantics as `_eval`, without walking the tree on every row."""
    if isinstance(node, Literal):
        constant = node.value
        return lambda record: constant
    if isinstance(node, Field):
        name = node.name
        if read is _identity:
            return lambda record: record.get(name)
        return lambda record: read(record.get(name))
    if isinstance(node, Unary):
        operand = _compile(node.operand, read)
        if node.op == "!":
            return lambda record: not operand(record)
        return lambda record: -_number(operand(record), "negation")
    if isinstance(node, Call):
        args = [_compile(a, read) for a in node.args]
        if node.function == "if":
            condition, then, otherwise = args
            return lambda record: then(record) if condition(record) else otherwise(record)
        function = _FUNCTIONS[node.function]
        return lambda record: function(*(a(record) for a in args))
    left, right, op = _compile(node.left, read), _compile(node.right, read), node.op
    if op == "&&":
        return lambda record: bool(left(record)) and bool(right(record))
    if op == "||":
        return lambda record: bool(left(record)) or bool(right(record))
    if op in ("==", "!="):
        equal = op == "=="
        if isinstance(node.left, Field) and isinstance(node.right, Literal):
            return _field_compared(node.left.name, node.right.value, op, read)

        def compare_equal(record: Mapping[str, Value]) -> Value:
            a, b = left(record), right(record)
            if type(a) is type(b) or a is None or b is None:
                return (a == b) is equal
            return _compare(op, a, b)

        return compare_equal
    if op in ("<", "<=", ">", ">="):
        return lambda record: _compare(op, left(record), right(record))
    return lambda record: _arithmetic(op, left(record), right(record))


def _arithmetic(op: str, left: Value, right: Value) -> Value:
    if op == "+" and (isinstance(left, str) or isinstance(right, str)):
        return _text(left) + _text(right)
    a, b = _number(left, op), _number(right, op)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExpressionError("division by zero")
    return Decimal(a) / Decimal(b)
