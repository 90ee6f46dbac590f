"""Bulk ledger writes against Azurite: entries and their id index in transactions of ≤ 100 operations, an entry
changed meanwhile refused without sinking its neighbours, a partition read back whole, failed writes undone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.ledger.bulk import delete_many, load_map, save_many
from shared.ledger.model import LedgerEntry, key_text
from shared.ledger.tables import Ledger
from shared.maps.model import Side


@pytest.fixture
async def ledger(storage_connection_string: str) -> AsyncIterator[Ledger]:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        yield Ledger(service, prefix=f"b{uuid.uuid4().hex[:8]}")


def entry(n: int) -> LedgerEntry:
    e = LedgerEntry(map="customers", key={"dataAreaId": "usmf", "CustomerAccount": f"B{n:04d}"})
    e.dataverse.row_id = str(uuid.UUID(int=n))
    e.fno.values = {"OrganizationName": f"Bulk {n}"}
    return e


async def test_many_entries_are_saved_with_their_index_and_read_back_whole(ledger: Ledger) -> None:
    result = await save_many(ledger, [entry(n) for n in range(250)])  # 500 operations: 5 transactions
    assert len(result.saved) == 250 and not result.refused and all(e.etag for e in result.saved)
    entries, index = await load_map(ledger, "customers")
    assert len(entries) == 250 and entries[key_text(entry(7).key)].fno.values == {"OrganizationName": "Bulk 7"}
    assert index[(Side.DATAVERSE, str(uuid.UUID(int=7)))] == key_text(entry(7).key)
    assert await ledger.key_for("customers", Side.DATAVERSE, str(uuid.UUID(int=9))) == entry(9).key


async def test_an_entry_changed_meanwhile_is_refused_and_its_neighbours_saved(ledger: Ledger) -> None:
    saved = (await save_many(ledger, [entry(n) for n in range(10)])).saved
    live = await ledger.get("customers", saved[3].key)
    assert live is not None
    live.fno.values = {"OrganizationName": "Changed live"}
    await ledger.save(live)  # live apply got there first
    for e in saved:
        e.fno.values = {"OrganizationName": "From the run"}
    result = await save_many(ledger, saved)
    assert [e.key for e in result.refused] == [saved[3].key] and len(result.saved) == 9
    kept = await ledger.get("customers", saved[3].key)
    assert kept is not None and kept.fno.values == {"OrganizationName": "Changed live"}


async def test_entries_of_failed_writes_are_removed_with_their_index(ledger: Ledger) -> None:
    saved = (await save_many(ledger, [entry(n) for n in range(3)])).saved
    await delete_many(ledger, saved[:2])
    entries, index = await load_map(ledger, "customers")
    assert list(entries) == [key_text(entry(2).key)] and list(index.values()) == [key_text(entry(2).key)]


async def test_entries_saved_again_with_their_etags_are_replaced_in_transactions(ledger: Ledger) -> None:
    """The transactions are encoded here (not by the SDK): creates, upserts of the index and ETag-conditional
    replaces must all round-trip, keys with quotes and non-ASCII text included."""
    first = [entry(n) for n in range(600)]  # 1,200 entities: the partition is read back in two pages
    first[0].key = {"dataAreaId": "usmf", "CustomerAccount": "O'Brien & Søn"}
    saved = (await save_many(ledger, first)).saved
    stored = await ledger.get("customers", saved[0].key)
    assert stored is not None and stored.etag == saved[0].etag  # the ETag each operation answered
    for e in saved:
        e.fno.values = {"OrganizationName": f"Again {e.key['CustomerAccount']}"}
    result = await save_many(ledger, saved)
    assert len(result.saved) == 600 and not result.refused
    entries, index = await load_map(ledger, "customers")
    assert len(entries) == 600 and len(index) == 600
    assert entries[key_text(entry(599).key)].etag == (await ledger.get("customers", entry(599).key)).etag  # type: ignore[union-attr]
    assert entries[key_text(first[0].key)].fno.values == {"OrganizationName": "Again O'Brien & Søn"}
    assert entries[key_text(entry(5).key)].fno.values == {"OrganizationName": "Again B0005"}


async def test_a_partition_read_in_key_ranges_is_the_partition_read_whole(ledger: Ledger) -> None:
    """A run cuts the read at a sample of the keys it read (parallel queries of about a page each): the same
    entries, ETags and id index as one query, with or without a cursor."""
    await save_many(ledger, [entry(n) for n in range(450)])
    whole, index = await load_map(ledger, "customers")
    bounds = [key_text(entry(n).key) for n in range(0, 450, 37)] + ["a", "id:", "zzz"]
    cut, cut_index = await load_map(ledger, "customers", bounds=bounds)
    assert {k: e.etag for k, e in cut.items()} == {k: e.etag for k, e in whole.items()} and len(cut) == 450
    assert cut_index == index and len(index) == 450  # the index rows themselves are never read as entries
    cursor = key_text(entry(300).key)
    after, _ = await load_map(ledger, "customers", cursor, bounds)
    assert sorted(after) == sorted(k for k in whole if k > cursor) and len(after) == 149


async def test_a_row_indexed_already_is_pointed_at_its_new_entry(ledger: Ledger) -> None:
    """Index rows are created (no lookup first); one there already — a run retried after a failure that left it —
    fails its transaction, whose entries are then saved one by one with their index rows upserted."""
    await save_many(ledger, [entry(3)])
    moved = entry(3).model_copy(update={"key": {"dataAreaId": "usmf", "CustomerAccount": "B3-RENAMED"}})
    result = await save_many(ledger, [moved, entry(4)])
    assert len(result.saved) == 2 and not result.refused
    assert await ledger.key_for("customers", Side.DATAVERSE, str(uuid.UUID(int=3))) == moved.key
    assert await ledger.key_for("customers", Side.DATAVERSE, str(uuid.UUID(int=4))) == entry(4).key
