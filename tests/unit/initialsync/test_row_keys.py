"""The ledger's RowKeys, worked out for every row of a run: the fast paths give exactly what the plain definitions
give (an entry saved by one and looked up by the other must be the same entity)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from shared.ledger.model import key_text
from shared.ledger.tables import safe_row_key

VALUES = st.one_of(st.text(), st.integers(), st.sampled_from(["US-001", "usmf", "O'Brien & Søn", "a/b#c?d", "50%"]))


@given(st.dictionaries(st.text(min_size=1, max_size=12), VALUES, min_size=1, max_size=4))
def test_key_text_is_the_quoted_key(key: dict[str, Any]) -> None:
    text = "|".join(f"{name}={str(value).lower()}" for name, value in sorted(key.items()))
    assert key_text(key) == quote(text, safe="=|-_.~ @:,;!$&()*+'")


@given(st.text())
def test_safe_row_key_replaces_exactly_what_a_row_key_may_not_hold(text: str) -> None:
    assert safe_row_key(text) == "".join(c if c not in "/\\#?" and ord(c) >= 32 else "_" for c in text)
