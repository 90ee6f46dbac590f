"""Request bodies: a Decimal is written digit for digit (money never passes through a float), nested or not, in
the one-call encoding bulk writes use and in its fallback alike."""

from __future__ import annotations

import json
from decimal import Decimal

from shared.connectors.wire import dumps, loads


def test_decimals_keep_every_digit_wherever_they_are() -> None:
    body = {"CreditLimit": Decimal("1234567890.123456"), "nested": {"m": Decimal("-0.500000")},
            "list": [Decimal("1E+3"), "text é", None, True, 7]}  # fmt: skip
    text = dumps(body)
    assert '"CreditLimit":1234567890.123456' in text and '"m":-0.500000' in text and "[1000," in text
    assert loads(text) == {**body, "list": [Decimal("1000"), "text é", None, True, 7]}
    assert json.loads(text)["list"][1] == "text é"  # not escaped to ASCII


def test_what_plain_json_cannot_hold_falls_back_to_the_exact_encoder() -> None:
    assert dumps({5: Decimal("2.50")}) == '{"5":2.50}'
    assert dumps(Decimal("2.50")) == "2.50" and dumps("a") == '"a"' and dumps((1, Decimal("3.0"))) == "[1,3.0]"
