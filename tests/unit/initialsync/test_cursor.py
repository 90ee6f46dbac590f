"""A step's cursor moves only over rows named by an integration key."""

from __future__ import annotations

from shared.initialsync.plan import Decision, Kind


def test_a_row_named_by_its_id_does_not_move_the_cursor_past_real_keys() -> None:
    unkeyed = Decision({"row_id": "0a0a0a0a-1111-2222-3333-444455556666"}, Kind.ERROR, error="key incomplete")
    keyed = Decision({"dataAreaId": "usmf", "CustomerAccount": "C-1"}, Kind.CREATED)
    later = Decision({"dataAreaId": "usmf", "CustomerAccount": "Z-9"}, Kind.CREATED)
    # Why it matters: the id-named row sorts after every real key, so a cursor taken over it skips them all.
    assert unkeyed.key_text > later.key_text
    assert not unkeyed.keyed and keyed.keyed
    cursor = max(d.key_text for d in (unkeyed, keyed) if d.keyed)
    assert later.key_text > cursor
