"""A linked row (a ledger entry, not deleted) gone from one app — deleted, its notification lost — is not created
again in the app that deleted it: the run carries the delete to the other app as live sync carries a delete
notification (`shared/sync/deletes.py`), by the map's `delete` (review finding 4: a full compare brought the
deleted rows back). Rows outside the map's filters are not "gone"; a create an unfinished chunk saved is redone."""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.initialsync.delta import narrow
from shared.initialsync.plan import Kind, Snapshot, plan_map
from shared.ledger.model import LedgerEntry, key_text
from shared.maps.model import Side
from shared.maps.transform import CompiledMap
from tests.unit.initialsync.test_plan import CUSTOMERS, LOOKUPS, MAPS, dataverse_row, fno_row, plan


def _map(delete: str) -> CompiledMap:
    return dataclasses.replace(CUSTOMERS, map=CUSTOMERS.map.model_copy(update={"delete": delete}))


def _linked(number: str) -> dict[str, LedgerEntry]:
    [first] = plan([fno_row(number)], [dataverse_row(number)])
    assert first.kind is Kind.LINKED and first.entry is not None
    return {first.key_text: first.entry}


def _plan(compiled: CompiledMap, fno: list[Snapshot], dv: list[Snapshot], ledger: dict[str, LedgerEntry],
          **kw: Any) -> list[Any]:  # fmt: skip
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    return plan_map(compiled, MAPS.maps, fno, dv, ledger, index, LOOKUPS, **kw)  # type: ignore[arg-type]


def test_a_row_deleted_in_fno_is_deleted_or_deactivated_in_dataverse_not_created_again() -> None:
    ledger = _linked("E5")
    for delete in ("delete", "deactivate"):
        [d] = _plan(_map(delete), [], [dataverse_row("E5")], ledger)
        assert d.kind is Kind.DELETED and not any(w.create for w in d.writes), d  # was: created again in F&O
        [w] = d.writes
        assert w.into is Side.DATAVERSE and w.delete == delete and w.row_id == dataverse_row("E5").row_id
        assert w.if_match == 'W/"500"'  # a row changed since it was read is left to live sync (412)
        assert d.entry is not None and d.entry.deleted and d.behind == [Side.DATAVERSE]


def test_a_row_deleted_in_dataverse_is_deleted_in_fno_or_kept_where_fno_cannot_deactivate() -> None:
    ledger = _linked("E6")
    [d] = _plan(_map("delete"), [fno_row("E6")], [], ledger)
    assert d.kind is Kind.DELETED and [(w.into, w.delete, w.key) for w in d.writes] == [
        (Side.FNO, "delete", {"dataAreaId": "usmf", "CustomerAccount": "E6"})
    ]  # was: created again in Dataverse
    [kept] = _plan(CUSTOMERS, [fno_row("E6")], [], ledger)  # customers: `delete: deactivate`
    assert kept.kind is Kind.SKIPPED and not kept.writes and kept.entry is not None and kept.entry.deleted
    [later] = _plan(CUSTOMERS, [fno_row("E6")], [], {kept.key_text: kept.entry})
    assert later.kind is Kind.SKIPPED and not later.writes and later.entry is None


def test_a_map_that_ignores_deletes_neither_deletes_nor_creates_again() -> None:
    ledger = _linked("E7")
    for fno, dv in (([fno_row("E7")], []), ([], [dataverse_row("E7")])):
        [d] = _plan(_map("ignore"), fno, dv, ledger)
        assert d.kind is Kind.SKIPPED and not d.writes and d.entry is None and "ignores" in d.detail


def test_a_row_outside_the_filters_on_one_side_is_not_gone() -> None:
    ledger = _linked("E8")
    person = fno_row("E8", PartyType="Person")  # read, but no longer an organization: outside the map
    [d] = _plan(_map("delete"), [person], [dataverse_row("E8")], ledger)
    assert d.kind is Kind.SKIPPED and not d.writes and "filters" in d.detail
    [d] = _plan(_map("delete"), [fno_row("E8")], [dataverse_row("E8", customertypecode=1)], ledger)
    assert d.kind is Kind.SKIPPED and not d.writes and "filters" in d.detail
    assert _plan(_map("delete"), [person], [], ledger) == []  # in neither side's scope: not the map's


def test_a_create_an_unfinished_chunk_saved_is_written_again_and_a_row_never_linked_is_created() -> None:
    [created] = plan([fno_row("E9")], [])
    assert created.kind is Kind.CREATED and created.entry is not None
    created.entry.sync_chunk = "dead-chunk"  # saved ahead of its create, which never landed
    ledger = {created.key_text: created.entry}
    [again] = _plan(_map("delete"), [fno_row("E9")], [], ledger, suspect=lambda text: {"dead-chunk"})
    assert again.kind is Kind.CREATED and [w.into for w in again.writes] == [Side.DATAVERSE]
    [new] = _plan(_map("delete"), [fno_row("F1")], [], ledger)
    assert new.kind is Kind.CREATED


def test_a_reconciliation_of_changes_compares_linked_rows_deleted_on_either_side() -> None:
    ledger = _linked("G1") | _linked("G2")
    dv_id = dataverse_row("G1").row_id or ""
    ledger[
        key_text({"dataAreaId": "usmf", "CustomerAccount": "G2"})
    ].dataverse.row_id = "22222222-0000-0000-0000-000000000002"
    index = {(Side.DATAVERSE, e.dataverse.row_id): t for t, e in ledger.items() if e.dataverse.row_id}
    # G1 deleted in Dataverse (in the delta as deleted); G2 deleted in F&O (not read any more), unchanged in Dataverse
    narrowed = narrow(CUSTOMERS, MAPS.maps, [fno_row("G1")], [], [dv_id], ledger, index, LOOKUPS)  # type: ignore[arg-type]
    assert [r.record["CustomerAccount"] for r in narrowed.fno_rows] == ["G1"] and narrowed.deleted == 1
    assert narrowed.wanted == ["22222222-0000-0000-0000-000000000002"]  # G2's counterpart, to delete it
