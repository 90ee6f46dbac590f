"""The ledger against Azurite: ETag concurrency, the id index written with its entry, the map-state cache."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry
from shared.ledger.tables import Ledger, LedgerConflict, safe_row_key
from shared.maps.model import Side


@pytest.fixture
async def ledger(storage_connection_string: str) -> AsyncIterator[Ledger]:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        yield Ledger(service, prefix=f"t{uuid.uuid4().hex[:8]}")


async def test_a_saved_entry_is_found_by_its_key_and_by_either_sides_row_id(ledger: Ledger) -> None:
    entry = LedgerEntry(map="customers", key={"dataAreaId": "usmf", "CustomerAccount": "C/1#?"})
    entry.fno.row_id = "{F-1}"
    await ledger.save(entry)
    found = await ledger.get("customers", {"dataAreaId": "usmf", "CustomerAccount": "C/1#?"})
    assert found is not None and found.fno.row_id == "{F-1}"
    found.dataverse.row_id = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    await ledger.save(found)
    assert await ledger.key_for("customers", Side.FNO, "{f-1}") == entry.key
    assert await ledger.key_for("customers", Side.DATAVERSE, "3f2504e0-4f89-11d3-9a0c-0305e82c3301") == entry.key
    assert await ledger.key_for("customers", Side.DATAVERSE, "unknown") is None


async def test_two_writers_of_one_entry_the_second_is_told_to_decide_again(ledger: Ledger) -> None:
    await ledger.save(LedgerEntry(map="customers", key={"k": 1}))
    with pytest.raises(LedgerConflict):
        await ledger.save(LedgerEntry(map="customers", key={"k": 1}))  # a second create
    first, second = await ledger.get("customers", {"k": 1}), await ledger.get("customers", {"k": 1})
    assert first is not None and second is not None
    first.fno.version = "2"
    await ledger.save(first)
    second.dataverse.version = "7"
    with pytest.raises(LedgerConflict):
        await ledger.save(second)  # read before the first writer saved: its ETag is stale
    again = await ledger.get("customers", {"k": 1})
    assert again is not None and again.fno.version == "2"


async def test_a_pause_is_seen_at_once_and_a_running_map_is_trusted_briefly(ledger: Ledger) -> None:
    assert not await ledger.is_paused("vendors")
    await ledger.set_map_state("vendors", "paused", "by a test")
    assert await ledger.is_paused("vendors")
    await ledger.set_map_state("vendors", "running")
    assert not await ledger.is_paused("vendors")


async def test_a_conflict_recorded_twice_is_one_record(ledger: Ledger) -> None:
    """A redelivered change records its conflict again: the same RowKey (the change's time and event id), so the
    first record stands."""
    record = ConflictRecord(
        map="customers", key={"k": 2}, policy="manual", winner="none", fields={"name": {"base": "a"}},
        source="fno", event_id="ev-1", status="open", changed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    await ledger.record_conflict(record)
    await ledger.record_conflict(record.model_copy(update={"at": datetime.now(UTC)}))
    assert [(c.event_id, c.status) for c in await ledger.conflicts("customers")] == [("ev-1", "open")]


def _sync_run_error(n: int) -> ErrorRecord:
    key = {"dataAreaId": "usmf", "CustomerAccount": f"BAD{n}"}
    return ErrorRecord(map="customers", event_id=f"sync:customers:customeraccount=bad{n}|dataareaid=usmf",
                       event={"key": key, "run_id": "r1", "into": "dataverse"}, request="map customers",
                       message="too long", status=400)  # fmt: skip


async def test_a_sync_runs_failed_rows_do_not_count_toward_the_pause_alert(ledger: Ledger) -> None:
    """The built-in alert (N errors within M minutes pause the map) is about live changes failing. The rows a sync
    run could not write (a go-live's old bad data) are the run's report: counted, one live error after a first sync
    with five failed rows paused live sync (go-live review)."""
    for n in range(5):
        await ledger.record_error(_sync_run_error(n))
    assert await ledger.recent_error_count("customers", 5) == 0
    live = ErrorRecord(map="customers", event_id="fno:live-1", event={}, request="PATCH", message="bad", status=400)
    await ledger.record_error(live)
    assert await ledger.recent_error_count("customers", 5) == 1


async def test_the_consoles_replay_of_a_sync_runs_failed_row_says_how_to_rerun_it(
    storage_connection_string: str,
) -> None:
    """A sync run's failed row is no change to queue again (its record holds the row's key and run, not a change):
    replaying it answers 409 naming the run's rerun-failed; replaying a map's errors replays live sync's only (both
    were a 500 — a ValidationError — and one such row blocked replaying the whole map)."""
    from datetime import UTC, datetime

    from shared.events.model import ChangeEvent, Operation, Side
    from shared.ops.actions import ErrorActions, InvalidAction
    from shared.ops.store import OpsStore

    class Queued:
        def __init__(self) -> None:
            self.events: list[ChangeEvent] = []

        async def publish(self, events: Sequence[ChangeEvent]) -> None:
            self.events.extend(events)

    change = ChangeEvent(event_id="fno:live-2", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                         row_id="{1}", occurred_at=datetime.now(UTC))  # fmt: skip
    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        ledger = Ledger(service, prefix=prefix)
        await ledger.record_error(_sync_run_error(7))
        live = ErrorRecord(map="customers", event_id=change.event_id, event=change.model_dump(mode="json"),
                           request="PATCH", message="bad")  # fmt: skip
        await ledger.record_error(live)
        queued = Queued()
        actions = ErrorActions(OpsStore(service, prefix=prefix), queued)
        with pytest.raises(InvalidAction) as refused:
            await actions.replay("customers", safe_row_key(_sync_run_error(7).event_id), "operator")
        assert refused.value.status == 409 and "/api/sync/r1/rerun-failed" in str(refused.value)
        replayed = await actions.replay_map("customers", "operator")
    assert len(replayed) == 1 and [e.event_id.split("~")[0] for e in queued.events] == ["fno:live-2"]


async def test_a_dismissed_or_resolved_error_is_not_among_the_unresolved(storage_connection_string: str) -> None:
    """A sync run reruns (and chooses a full compare for) the rows still in the error log: one a person dismissed in
    the console, or that a replay resolved, is not rerun (go-live review: dismissed ones were retried)."""
    from shared.ops.store import OpsStore

    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        ledger = Ledger(service, prefix=prefix)
        for n in range(3):
            await ledger.record_error(_sync_run_error(n))
        store = OpsStore(service, prefix=prefix)
        await store.mark_error("customers", safe_row_key(_sync_run_error(0).event_id), Status="dismissed")
        await store.mark_error("customers", safe_row_key(_sync_run_error(1).event_id), Status="resolved")
        assert len(await ledger.errors("customers")) == 3
        assert [e.event_id for e in await ledger.errors("customers", unresolved=True)] == [_sync_run_error(2).event_id]


async def test_a_dismissed_error_that_fails_again_is_open_again(storage_connection_string: str) -> None:
    """One error-log entry per row of a sync run: when the row fails again after a person dismissed it, it is open
    again — else rerun-failed skips it and it never syncs (final review)."""
    from shared.ops.store import OpsStore

    prefix = f"t{uuid.uuid4().hex[:8]}"
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        ledger = Ledger(service, prefix=prefix)
        await ledger.record_error(_sync_run_error(4))
        await OpsStore(service, prefix=prefix).mark_error(
            "customers", safe_row_key(_sync_run_error(4).event_id), Status="dismissed"
        )
        assert await ledger.errors("customers", unresolved=True) == []
        await ledger.record_error(_sync_run_error(4))
        assert [e.event_id for e in await ledger.errors("customers", unresolved=True)] == [_sync_run_error(4).event_id]
