"""A sync step that died after saving a chunk's ledger entries and before its writes landed (host killed, or its lock
ran out): the step after must not read "the target changed since the last sync" and copy the target's old value
back over the source's newer one. The run records the chunks in flight (`MapProgress.in_flight`); their keys are
decided with the side that differs from the ledger taken as behind. From the review of the pipelined run."""

from __future__ import annotations

from shared.initialsync.plan import Kind, plan_map
from shared.maps.model import Side
from tests.unit.initialsync.test_plan import CUSTOMERS, LOOKUPS, MAPS, dataverse_row, fno_row, plan


def test_a_saved_but_unwritten_update_is_written_again_not_reversed() -> None:
    # Last synced: both "Contoso". Then F&O was changed to "Fabrikam" (its notification lost).
    [linked] = plan([fno_row("E1")], [dataverse_row("E1")])
    ledger = {linked.key_text: linked.entry}
    [d] = plan([fno_row("E1", OrganizationName="Fabrikam")], [dataverse_row("E1")], ledger)
    assert d.kind is Kind.UPDATED and [w.into for w in d.writes] == [Side.DATAVERSE]
    # The step saves d.entry (before the write) and the host dies: Dataverse still says "Contoso".
    ledger = {d.key_text: d.entry}
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    fno, dataverse = [fno_row("E1", OrganizationName="Fabrikam")], [dataverse_row("E1")]
    [unaware] = plan_map(CUSTOMERS, MAPS.maps, fno, dataverse, ledger, index, LOOKUPS)  # type: ignore[arg-type]
    assert [w.into for w in unaware.writes] == [Side.FNO]  # what a step not told of the unfinished chunk would do
    [again] = plan_map(CUSTOMERS, MAPS.maps, fno, dataverse, ledger, index, LOOKUPS,  # type: ignore[arg-type]
                       suspect=lambda text: text == d.key_text)  # fmt: skip
    assert [w.into for w in again.writes] == [Side.DATAVERSE]
    assert again.writes[0].values["name"] == "Fabrikam" and again.conflict is None
