"""`Ledger.save_many` against Azurite: when a transaction fails, its entries are saved one by one and each answers
its own failure — a conflict or any other refusal (an entity too large) — without raising for its neighbours."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.ledger.model import LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict


@pytest.fixture
async def ledger(storage_connection_string: str) -> AsyncIterator[Ledger]:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        yield Ledger(service, prefix=f"s{uuid.uuid4().hex[:8]}")


def entry(number: str, name: str) -> LedgerEntry:
    e = LedgerEntry(map="customers", key={"dataAreaId": "usmf", "CustomerAccount": number})
    e.fno.values = {"OrganizationName": name}
    return e


async def test_an_entry_too_large_answers_its_own_error_and_its_neighbours_are_saved(ledger: Ledger) -> None:
    # A string property holds at most 64 KiB (Microsoft Learn, "Understanding the Table service data model").
    entries = [entry("S1", "one"), entry("S2", "x" * 70_000), entry("S3", "three")]
    out = await ledger.save_many(entries)
    assert isinstance(out[0], LedgerEntry) and isinstance(out[2], LedgerEntry)
    assert isinstance(out[1], Exception) and not isinstance(out[1], LedgerConflict)
    assert await ledger.get("customers", entries[2].key) is not None
    assert await ledger.get("customers", entries[1].key) is None
