"""The pure planning step: what a change becomes given the ledger entry and (when read) the target row."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events.model import ChangeEvent, Operation, Side
from shared.ledger.model import LedgerEntry, SideState
from shared.maps.loader import load_maps
from shared.maps.transform import transform
from shared.sync.heal import Resolver
from shared.sync.plan import can_assume, plan_change, skip_reason
from shared.sync.rows import Current

MAPS = load_maps()
GROUPS = MAPS.maps["customer_groups"]
KEY = {"dataAreaId": "usmf", "CustomerGroupId": "10"}
RECORD = {"dataAreaId": "usmf", "CustomerGroupId": "10", "Description": "Wholesale"}


def event(version: str = "5", **fields: str) -> ChangeEvent:
    return ChangeEvent(
        event_id=f"e{version}", source=Side.FNO, entity="CustomerGroups", operation=Operation.UPDATE,
        row_id="usmf|10", fields=RECORD | fields, source_version=version, occurred_at=datetime.now(UTC),
    )  # fmt: skip


def synced(etag: str | None) -> LedgerEntry:
    values = {"msdyn_groupid": "10", "msdyn_description": "Wholesale"}
    return LedgerEntry(
        map="customer_groups", key=KEY,
        fno=SideState(version="4", values={"CustomerGroupId": "10", "Description": "Wholesale"}, last_event="e4"),
        dataverse=SideState(version="70", etag=etag, values=values, row_id="00000000-0000-4000-8000-000000000001"),
    )  # fmt: skip


def test_a_row_never_synced_is_a_guarded_create_without_a_read() -> None:
    e = event()
    row = transform(GROUPS, Side.FNO, e.fields, MAPS.maps, Resolver())
    plan = plan_change(GROUPS.map, Side.FNO, e, row, KEY, None, None, read=False)
    assert can_assume(None, Side.DATAVERSE)
    assert plan.write is not None and plan.write.create and plan.write.if_match is None and plan.optimistic


def test_a_synced_row_is_written_under_the_remembered_etag_with_only_what_changed() -> None:
    e = event(Description="Retail")
    row = transform(GROUPS, Side.FNO, e.fields, MAPS.maps, Resolver())
    entry = synced('W/"70"')
    plan = plan_change(GROUPS.map, Side.FNO, e, row, KEY, entry, None, read=False)
    assert plan.write is not None and plan.write.if_match == 'W/"70"' and not plan.write.create
    assert plan.write.values == {"msdyn_description": "Retail"} and not plan.back and plan.conflict is None


def test_without_a_remembered_etag_the_row_must_be_read() -> None:
    assert not can_assume(synced(None), Side.DATAVERSE)
    deleted = synced('W/"70"')
    deleted.deleted = True
    assert not can_assume(deleted, Side.DATAVERSE)


def test_read_both_sides_changed_is_a_conflict_settled_by_policy() -> None:
    e = event(Description="Retail")
    row = transform(GROUPS, Side.FNO, e.fields, MAPS.maps, Resolver())
    current = Current({"msdyn_groupid": "10", "msdyn_description": "Theirs"}, 'W/"71"', None)
    plan = plan_change(GROUPS.map, Side.FNO, e, row, KEY, synced('W/"70"'), current, read=True)
    assert plan.conflict is not None and set(plan.conflict.fields) == {"msdyn_description"}
    assert plan.write is not None and plan.write.if_match == 'W/"71"'  # conditional on the row as read


def test_stale_and_echo() -> None:
    entry = synced('W/"70"')
    assert skip_reason(entry, Side.FNO, event("4"), "4", {})[0] == "skipped-stale"  # type: ignore[index]
    seen = {"CustomerGroupId": "10", "Description": "Wholesale"}
    assert skip_reason(entry, Side.FNO, event("6"), "6", seen)[0] == "skipped-echo"  # type: ignore[index]
    assert skip_reason(entry, Side.FNO, event("6"), "6", seen | {"Description": "New"}) is None
