"""The key ranges a run reads a map's ledger in: every entry's RowKey in exactly one range, the id-index rows
(`id:<side>:<row id>`) in none, a cursor respected."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.ledger.bulk import key_ranges
from shared.ledger.model import key_text

KEYS = st.dictionaries(st.sampled_from(["dataAreaId", "CustomerAccount", "id", "Code"]), st.text(min_size=1),
                       min_size=1).map(key_text)  # fmt: skip


def _covering(row_key: str, ranges: list[tuple[str | None, bool, str | None]]) -> int:
    return sum(
        1
        for low, inclusive, high in ranges
        if (low is None or row_key > low or (inclusive and row_key == low)) and (high is None or row_key < high)
    )


@given(st.lists(KEYS), st.lists(KEYS, max_size=20), st.one_of(st.none(), KEYS))
def test_every_entry_is_in_one_range_after_the_cursor_and_no_index_row_is(
    row_keys: list[str], bounds: list[str], after: str | None
) -> None:
    ranges = key_ranges(after, bounds)
    for row_key in row_keys:
        assert _covering(row_key, ranges) == (0 if after is not None and row_key <= after else 1)
    for index_row in ("id:dataverse:0332b17e-6dc6-5773-b129-d3f8ad9be2bb", "id:fno:5637144576"):
        assert _covering(index_row, ranges) == 0


def test_without_bounds_the_partition_is_two_queries_around_the_index() -> None:
    assert key_ranges(None, []) == [(None, False, "id:"), ("id;", True, None)]
