"""What a conflict's resolution records of a side it wrote: never a person's edit made after the write (it would
look like an echo of the write and never reach the other app)."""

from __future__ import annotations

from shared.ops.resolve import settled
from shared.sync.rows import Current, Written

BEFORE = Current({"name": "Old"}, 'W/"100"', "row-1")


def test_the_apps_answer_to_the_write_is_recorded_not_a_read_after_it() -> None:
    written = Written('W/"101"', "row-1", {"name": "Chosen"})
    left = settled(written, None, BEFORE, {"name": "Chosen"})
    assert (left.record, left.version, left.row_id) == ({"name": "Chosen"}, "101", "row-1")


def test_a_row_changed_after_the_write_is_not_recorded_as_synced() -> None:
    """Without the row in the write's answer it is read again; a person's edit since shows as a newer version: the
    row as the write left it (the row read before, with what was written, on whose ETag the write went) and the
    write's version are kept, so the edit's notification is newer than the ledger and differs from what was written
    — it flows into the other app."""
    written = Written('W/"101"', "row-1", None)
    edited = Current({"name": "A person's edit", "city": "Bergen"}, 'W/"102"', "row-1")
    before = Current({"name": "Old", "city": "Oslo"}, 'W/"100"', "row-1")
    left = settled(written, edited, before, {"name": "Chosen"})
    assert left.record == {"name": "Chosen", "city": "Oslo"} and left.version == "101"


def test_a_row_as_the_write_left_it_is_recorded_from_the_read() -> None:
    written = Written('W/"101"', None, None)
    same = Current({"name": "Chosen", "city": "Oslo"}, 'W/"101"', "row-1")
    left = settled(written, same, BEFORE, {"name": "Chosen"})
    assert (left.record, left.version, left.row_id) == (same.record, "101", "row-1")


def test_an_fno_row_changed_after_the_write_has_another_token() -> None:
    written = Written('W/"JzEsNTYzNzE0NDU3Nyc="', None, None)  # F&O: '<RecVersion>,<RecId>', base64
    edited = Current({"Name": "Edited"}, 'W/"JzIsNTYzNzE0NDU3Nyc="', None)
    assert settled(written, edited, Current({}, None, None), {"Name": "Chosen"}).record == {"Name": "Chosen"}
