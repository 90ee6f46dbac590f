"""A run builds each created row's ledger entry without pydantic's per-field walk (`plan._built`), naming every field
itself: a field added to `LedgerEntry` or `SideState` and not named there would make it fall back to pydantic —
correct, slower — so this says to name it. The entry built is the one pydantic would build."""

from __future__ import annotations

from shared.initialsync import plan
from shared.ledger.model import LedgerEntry
from tests.unit.initialsync.test_plan import fno_row
from tests.unit.initialsync.test_plan import plan as plan_rows


def test_created_entries_name_every_field_and_equal_what_pydantic_builds() -> None:
    assert plan._NAMED, "name the new ledger field in shared/initialsync/plan.py (_side_state, _entry, _NAMED)"
    [d] = plan_rows([fno_row("B1")], [])
    assert d.entry is not None and d.entry.model_fields_set == set(LedgerEntry.model_fields)
    again = LedgerEntry.model_validate_json(d.entry.model_dump_json())
    assert again.model_dump() == d.entry.model_dump()
    d.entry.fno.version = "9"  # a built entry is a model like any other: assignment validates and is kept
    assert d.entry.fno.version == "9" and "version" in d.entry.fno.model_fields_set
