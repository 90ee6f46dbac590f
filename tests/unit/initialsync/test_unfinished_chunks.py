"""A sync step that died after saving a chunk's ledger entries and before its writes landed (host killed, or its lock
ran out): the step after must not read "the target changed since the last sync" and copy the target's old value
back over the source's newer one. The run records the chunks in flight (`MapProgress.in_flight`); their keys are
decided with the side that differs from the ledger taken as behind — but only where the entry carries the mark of the
unfinished chunk (that chunk really saved it) and the differing side is still at the version the chunk read. From the
reviews of the pipelined run (and of go-live, finding 1: a person's newer edit reversed)."""

from __future__ import annotations

from typing import Any

from shared.initialsync.model import MapProgress
from shared.initialsync.plan import Kind, Snapshot, plan_map
from shared.maps.model import Side
from tests.unit.initialsync.test_plan import CUSTOMERS, LOOKUPS, MAPS, dataverse_row, fno_row, plan


def test_a_saved_but_unwritten_update_is_written_again_not_reversed() -> None:
    # Last synced: both "Contoso". Then F&O was changed to "Fabrikam" (its notification lost).
    [linked] = plan([fno_row("E1")], [dataverse_row("E1")])
    ledger = {linked.key_text: linked.entry}
    [d] = plan([fno_row("E1", OrganizationName="Fabrikam")], [dataverse_row("E1")], ledger)
    assert d.kind is Kind.UPDATED and [w.into for w in d.writes] == [Side.DATAVERSE]
    # The step saves d.entry (before the write, marked with its chunk) and the host dies: Dataverse still says
    # "Contoso".
    assert d.entry is not None
    d.entry.sync_chunk = "chunk-1"
    ledger = {d.key_text: d.entry}
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    fno, dataverse = [fno_row("E1", OrganizationName="Fabrikam")], [dataverse_row("E1")]
    [unaware] = plan_map(CUSTOMERS, MAPS.maps, fno, dataverse, ledger, index, LOOKUPS)  # type: ignore[arg-type]
    assert [w.into for w in unaware.writes] == [Side.FNO]  # what a step not told of the unfinished chunk would do
    [again] = plan_map(CUSTOMERS, MAPS.maps, fno, dataverse, ledger, index, LOOKUPS,  # type: ignore[arg-type]
                       suspect=lambda text: {"chunk-1"} if text == d.key_text else set())  # fmt: skip
    assert [w.into for w in again.writes] == [Side.DATAVERSE]
    assert again.writes[0].values["name"] == "Fabrikam" and again.conflict is None


def test_a_suspect_key_whose_entry_the_dead_step_did_not_save_keeps_the_persons_change() -> None:
    """The dead step's entry was put back after a failed write, refused by live sync, or never saved (the host
    died between checkpointing `in_flight` and saving): the ledger holds the last sync, not the step's intent."""
    # Last synced: both "Contoso" (by an earlier chunk). A person renames the customer in F&O (notification lost).
    d = _changed_in_fno_after_a_marked_entry("E9", "an-earlier-chunk", "Fabrikam", 'W/"JzIsMTAwMCc="')
    # Was: [Side.FNO] with "Contoso" — Dataverse's old value written over the person's "Fabrikam".
    assert [w.into for w in d.writes] == [Side.DATAVERSE] and d.writes[0].values["name"] == "Fabrikam"


def test_a_marked_entry_whose_write_landed_keeps_a_later_change_by_a_person() -> None:
    """The dead step saved and wrote, then died before its checkpoint: its entry holds what both apps got. A person
    who changes the row before the next step (its F&O ETag moves on) is not reversed: that side is not behind."""
    d = _changed_in_fno_after_a_marked_entry("E8", "the-dead-chunk", "Northwind", 'W/"JzMsMTAwMCc="')
    assert [w.into for w in d.writes] == [Side.DATAVERSE] and d.writes[0].values["name"] == "Northwind"


def _changed_in_fno_after_a_marked_entry(number: str, mark: str, name: str, etag: str) -> Any:
    """A pair linked equal, its entry marked by chunk `mark`, then renamed in F&O; planned by a step resuming after the
    dead chunk "the-dead-chunk"."""
    [linked] = plan([fno_row(number)], [dataverse_row(number)])
    assert linked.entry is not None
    linked.entry.sync_chunk = mark
    ledger = {linked.key_text: linked.entry}
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    edited = Snapshot(fno_row(number, OrganizationName=name).record, etag)
    [d] = plan_map(CUSTOMERS, MAPS.maps, [edited], [dataverse_row(number)], ledger, index,  # type: ignore[arg-type]
                   LOOKUPS, suspect=lambda text: {"the-dead-chunk"})  # fmt: skip
    return d


def test_a_checkpoint_from_before_the_marks_reads_with_no_entry_trusted() -> None:
    old = MapProgress.model_validate({"map": "customers", "in_flight": [["a", "m"], ["n", "z", "c1"]]})
    assert old.in_flight == [("a", "m", ""), ("n", "z", "c1")]


def _saved_unwritten_rename(number: str) -> dict[str, Any]:
    """F&O renamed (notification lost); a step saved the entry for its Dataverse write (marked) and died."""
    [linked] = plan([fno_row(number)], [dataverse_row(number, telephone1=None)])
    ledger = {linked.key_text: linked.entry}
    renamed = fno_row(number, OrganizationName="Fabrikam")
    [d] = plan([renamed], [dataverse_row(number, telephone1=None)], ledger)  # type: ignore[arg-type]
    assert d.entry is not None and d.entry.sync_before == {"dataverse:name": "Contoso"}
    d.entry.sync_chunk = "dead-chunk"
    return {d.key_text: d.entry}


def test_an_unwritten_update_is_written_again_though_a_person_changed_another_column_since() -> None:
    ledger = _saved_unwritten_rename("E7")
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    # Meanwhile a person set a phone in Dataverse (its version moved on; notification lost): the name is still as
    # the step read it, so the write never landed there.
    phoned = Snapshot(dataverse_row("E7", telephone1="555-0100").record, 'W/"777"', dataverse_row("E7").row_id)
    [d] = plan_map(CUSTOMERS, MAPS.maps, [fno_row("E7", OrganizationName="Fabrikam")], [phoned], ledger,
                   index, LOOKUPS, suspect=lambda t: {"dead-chunk"})  # type: ignore[arg-type]  # fmt: skip
    writes = {w.into: w.values for w in d.writes}
    assert writes == {Side.DATAVERSE: {"name": "Fabrikam"}, Side.FNO: {"PrimaryContactPhone": "555-0100"}}


def test_a_landed_update_a_person_then_changed_in_the_target_keeps_the_persons_value() -> None:
    ledger = _saved_unwritten_rename("E6")
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    # The step's write landed ("Fabrikam"), then it died before its checkpoint; a person renamed it in Dataverse.
    person = Snapshot(dataverse_row("E6", name="Northwind", telephone1=None).record, 'W/"778"',
                      dataverse_row("E6").row_id)  # fmt: skip
    [d] = plan_map(CUSTOMERS, MAPS.maps, [fno_row("E6", OrganizationName="Fabrikam")], [person], ledger,
                   index, LOOKUPS, suspect=lambda t: {"dead-chunk"})  # type: ignore[arg-type]  # fmt: skip
    assert [(w.into, w.values) for w in d.writes] == [(Side.FNO, {"OrganizationName": "Northwind"})]
