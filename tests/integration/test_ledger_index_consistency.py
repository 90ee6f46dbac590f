"""The id index never outlives its entry: an entry and its index rows are one entity-group transaction, so an entry
that was not saved — a losing writer, a refused bulk entry, one the service would not store — leaves no index row
for `key_for` to answer with (a Dataverse delete of the row would otherwise act on another key's F&O row)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.events.model import ChangeEvent, Operation
from shared.ledger.bulk import save_many
from shared.ledger.model import LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict
from shared.maps.loader import load_maps
from shared.maps.model import Side
from shared.sync.deletes import apply_delete
from tests.unit.sync.fakes import FakeRows

GROUPS = load_maps().maps["customer_groups"].map  # delete: delete (the default)
D1, D2 = "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002"
KEY = {"dataAreaId": "usmf", "CustomerGroupId": "G1"}


@pytest.fixture
async def ledger(storage_connection_string: str) -> AsyncIterator[Ledger]:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        yield Ledger(service, prefix=f"r{uuid.uuid4().hex[:8]}")


def group(row_id: str, key: dict[str, str] = KEY) -> LedgerEntry:
    e = LedgerEntry(map="customer_groups", key=dict(key))
    e.dataverse.row_id = row_id
    return e


async def test_the_loser_of_two_creates_leaves_no_index_row(ledger: Ledger) -> None:
    """Two Dataverse rows with one integration key (a duplicate) applied at once: both create entry K, one wins."""
    await ledger.save(group(D1))
    with pytest.raises(LedgerConflict):
        await ledger.save(group(D2))
    assert await ledger.key_for("customer_groups", Side.DATAVERSE, D2) is None  # before c19e474: None


async def test_deleting_the_duplicate_that_lost_does_not_delete_the_synced_fno_row(ledger: Ledger) -> None:
    await ledger.save(group(D1))
    with pytest.raises(LedgerConflict):
        await ledger.save(group(D2))  # its change is decided again: K keeps D1 (plan.py: row_id first wins)
    dataverse, fno = FakeRows(Side.DATAVERSE), FakeRows(Side.FNO)
    fno.put(GROUPS, KEY, {"Description": "synced with D1"})
    # A person deletes the duplicate D2 in Dataverse (its pre-image names Dataverse columns, not the F&O key).
    event = ChangeEvent(event_id="dv-del-d2", source=Side.DATAVERSE, entity="msdyn_customergroup",
                        operation=Operation.DELETE, row_id=D2, fields={"msdyn_groupid": "G1"},
                        occurred_at=datetime.now(UTC))  # fmt: skip
    result = await apply_delete(ledger, dataverse, fno, GROUPS, Side.DATAVERSE, event)
    assert fno.rows, f"F&O row of D1 deleted by D2's delete: {result}"
    entry = await ledger.get("customer_groups", KEY)
    assert entry is not None and not entry.deleted


async def test_a_refused_bulk_entry_leaves_the_index_alone(ledger: Ledger) -> None:
    """The run loaded entry K (F&O only) and read Dataverse row D2 with K's key: it links them (entry K names D2).
    Meanwhile live apply changed K (its ETag moved) and synced D2's key edit (entry K2, index D2 → K2). The run's
    stale entry K is refused — live wins — yet its index row lands: create fails (D2 is indexed), then upsert."""
    k2 = {"dataAreaId": "usmf", "CustomerGroupId": "G2"}
    live_k = await ledger.save(LedgerEntry(map="customer_groups", key=dict(KEY)))  # as the run loaded it
    run_k = live_k.model_copy(deep=True)
    live_k.fno.values = {"Description": "changed live"}
    await ledger.save(live_k)  # live apply moved K on
    await ledger.save(group(D2, k2))  # live: D2 re-keyed to K2
    run_k.dataverse.row_id = D2  # the run's stale match, read before the key edit
    result = await save_many(ledger, [run_k])
    assert [e.key for e in result.refused] == [KEY]
    assert await ledger.key_for("customer_groups", Side.DATAVERSE, D2) == k2  # before c19e474: K2; now: K


async def test_a_bulk_entry_that_could_not_be_saved_leaves_no_index_row(ledger: Ledger) -> None:
    """An entry the service refuses (over 64 KiB in one property: too large) — bulk `save` calls it refused, the
    run skips the row — yet its index row names a key with no entry; heal's `key_for` then trusts it."""
    big = group(D1)
    big.fno.values = {"Description": "x" * 70_000}
    result = await save_many(ledger, [big])
    assert result.refused and await ledger.get("customer_groups", KEY) is None
    assert await ledger.key_for("customer_groups", Side.DATAVERSE, D1) is None


async def test_a_batch_entry_that_lost_leaves_no_index_row(ledger: Ledger) -> None:
    """Apply's batch path (`_flush` → `save_many`): the group's index rows land first, the losing create answers
    LedgerConflict and is decided again — its index row stays."""
    await ledger.save(group(D1))
    results = await ledger.save_many([group(D2)])
    assert isinstance(results[0], LedgerConflict)
    assert await ledger.key_for("customer_groups", Side.DATAVERSE, D2) is None
