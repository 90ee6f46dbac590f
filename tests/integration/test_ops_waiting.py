"""The console's lag counts every change still waiting, on the real broker and Table Storage: queued (recorded by the
publisher before the send), deferred (re-scheduled, still waiting) and held (the ledger's `held` table); a final
outcome — applied, skipped, an error — takes it off, a duplicate delivery's too, and a failed send leaves nothing.
A lag rule fires on a change still waiting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.servicebus import NEXT_AVAILABLE_SESSION
from azure.servicebus.aio import ServiceBusClient

from local.servicebus.config import DEFAULT_CONFIG
from shared.bus.publisher import BusUnavailable, ServiceBusChangePublisher
from shared.events.model import ChangeEvent, Operation, Side
from shared.ledger.model import ErrorRecord
from shared.ledger.tables import Ledger
from shared.maps.loader import MapSet, load_maps
from shared.ops.alerts import Alert, AlertRule
from shared.ops.observer import Effects, Observer
from shared.ops.status import map_status
from shared.ops.store import OpsStore
from shared.ops.waiting import WaitingChanges
from shared.ops.watch import watch_lag
from tests import stack
from tests.e2e.sync_stack import eventually


@pytest.fixture(scope="module")
def servicebus() -> Any:
    with stack.broker(DEFAULT_CONFIG) as connection:
        yield connection


@dataclass
class Parts:
    maps: MapSet
    ledger: Ledger
    store: OpsStore
    waiting: WaitingChanges
    observer: Observer


@pytest.fixture
async def parts(storage_connection_string: str) -> AsyncIterator[Parts]:
    maps = load_maps()
    prefix = f"w{uuid.uuid4().hex[:8]}"
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        store = OpsStore(service, prefix=prefix)
        waiting = WaitingChanges(store, lambda e: [c.map.name for c in maps.reading(Side(str(e.source)), e.entity)])

        async def nothing(*_: Any) -> None:
            return None

        async def no_alert(_: Alert) -> None:
            return None

        effects = Effects(store, lambda _: [], nothing, no_alert, waiting)
        observer = Observer(lambda: effects)
        yield Parts(maps, Ledger(service, prefix=prefix), store, waiting, observer)
        for task in (observer._flusher, waiting._flusher):
            if task is not None:
                task.cancel()


def change(minutes_ago: float) -> ChangeEvent:
    number = f"W{uuid.uuid4().hex[:6]}"
    return ChangeEvent(
        event_id=f"fno-{number}", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
        row_id=number, keys={"dataAreaId": "usmf", "CustomerAccount": number},
        occurred_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )  # fmt: skip


async def lag(p: Parts) -> dict[str, Any]:
    return await map_status("customers", p.maps, p.ledger, p.store, p.waiting, time.time())


async def test_queued_deferred_and_held_changes_all_count_until_an_outcome_is_final(
    parts: Parts, servicebus: str
) -> None:
    p = parts
    assert (await lag(p))["oldest_waiting_seconds"] is None
    old, new = change(10), change(0.5)
    async with ServiceBusClient.from_connection_string(servicebus) as client:
        publisher = ServiceBusChangePublisher(client, "changes", 10.0, 4, watcher=p.waiting)
        await publisher.publish([new, old])
        await publisher.close()
        # Really on the queue: the session of one of them holds it.
        async with client.get_queue_receiver("changes", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as rx:
            received = await rx.peek_messages(max_message_count=10)
            assert {m.message_id for m in received} & {old.event_id, new.event_id}
    # Written in the background, within half a second, and well before an apply outcome could be flushed.
    queued = await eventually(lambda: lag(p), lambda s: s["oldest_queued_seconds"] is not None, seconds=2.0)
    assert 595 <= queued["oldest_queued_seconds"] <= 660 and not queued["oldest_queued_deferred"]
    assert queued["oldest_waiting_seconds"] == queued["oldest_queued_seconds"] and queued["oldest_held_seconds"] is None

    # Throttled: re-scheduled on the bus, still waiting, shown as deferred.
    p.observer.observe(old, "customers", "deferred", "429 Too Many Requests", 0.0)
    await p.observer.flush()
    deferred = await lag(p)
    assert deferred["oldest_queued_deferred"] and deferred["oldest_queued_seconds"] >= 595

    # Applied at last (and delivered twice): off the list; the younger change is now the oldest.
    for _ in range(2):
        p.observer.observe(old, "customers", "applied", "", 1000.0)
        await p.observer.flush()
    after = await lag(p)
    assert 25 <= after["oldest_queued_seconds"] <= 90 and not after["oldest_queued_deferred"]

    # A held change counts too, from the ledger's held table; the older of the two is the lag.
    held = change(20)
    await p.ledger.hold("customers", held)
    both = await lag(p)
    assert 1195 <= both["oldest_held_seconds"] <= 1260 and both["oldest_waiting_seconds"] == both["oldest_held_seconds"]

    p.observer.observe(new, "customers", "error", "400 Bad Request", 0.0)  # an error is the error log's now
    await p.observer.flush()
    assert (await lag(p))["oldest_queued_seconds"] is None


async def test_a_change_the_bus_refused_is_not_left_waiting(parts: Parts, servicebus: str) -> None:
    too_big = change(1).model_copy(update={"fields": {"Notes": "x" * 2_000_000}})  # over any message size limit
    async with ServiceBusClient.from_connection_string(servicebus) as client:
        publisher = ServiceBusChangePublisher(client, "changes", 10.0, 4, watcher=parts.waiting)
        with pytest.raises(BusUnavailable):
            await publisher.publish([too_big])
        await publisher.close()
    await asyncio.sleep(0.7)  # past the background write
    assert (await lag(parts))["oldest_queued_seconds"] is None


async def test_a_lag_rule_fires_on_a_change_still_waiting(parts: Parts) -> None:
    """Nothing applied (the apply function down, a backlog): the lag watch fires the rule on the waiting change."""
    paused: list[tuple[str, str]] = []
    notified: list[Alert] = []

    async def pause(map_name: str, reason: str) -> None:
        paused.append((map_name, reason))

    async def notify(alert: Alert) -> None:
        notified.append(alert)

    rules = {"customers": [AlertRule(lag_minutes=5, actions=["pause", "notify"])]}
    effects = Effects(parts.store, lambda m: rules.get(m, []), pause, notify, parts.waiting)
    observer = Observer(lambda: effects)
    maps = ["customers", "vendors"]
    assert await watch_lag(observer, parts.waiting, maps, effects.rules) == {}  # nothing waiting: nothing fires

    await parts.waiting.queued([change(3)])  # younger than the rule's 5 minutes
    await parts.waiting.flush()
    (age,) = (await watch_lag(observer, parts.waiting, maps, effects.rules)).values()
    assert 170 <= age <= 240 and not notified
    late = change(12)
    await parts.waiting.queued([late])
    await parts.waiting.flush()
    await parts.ledger.hold("vendors", change(60))  # held on purpose (paused): not late, and vendors has no rule
    ages = await watch_lag(observer, parts.waiting, maps, effects.rules)
    assert set(ages) == {"customers"} and ages["customers"] >= 715
    (alert,) = notified
    assert alert.map == "customers" and alert.rule == "lag over 5 minutes"
    assert "has waited 12" in alert.what and late.event_id in alert.what and alert.actions == ["pause", "notify"]
    assert paused == [("customers", f"alert: lag over 5 minutes: {alert.what}")]
    last = await parts.store.last_alert("customers")
    assert last is not None and last.what == alert.what  # the console's "last alert"
    await watch_lag(observer, parts.waiting, maps, effects.rules)
    assert len(notified) == 1  # once per cooldown (15 minutes)


async def test_a_change_that_gave_up_into_the_error_log_no_longer_counts(parts: Parts) -> None:
    """After its last retry a change goes to the error log without an outcome the observer sees: the lag drops it."""
    gave_up, waiting = change(30), change(2)
    await parts.waiting.queued([gave_up, waiting])
    await parts.waiting.flush()
    await parts.ledger.record_error(
        ErrorRecord(map="customers", event_id=gave_up.event_id, event=gave_up.model_dump(mode="json"), request="",
                    message="gave up after 12 retries: 429 Too Many Requests")
    )  # fmt: skip
    shown = await lag(parts)
    assert 100 <= shown["oldest_queued_seconds"] <= 180  # the other one
    assert (await parts.waiting.oldest("customers") or {}).get("event_id") == waiting.event_id


async def test_an_outcome_seen_in_another_instance_before_the_row_is_written_leaves_nothing_waiting(
    parts: Parts,
) -> None:
    """The publisher and apply run in different instances: apply's outcome can be flushed before the publisher's
    background write lands. The deletion leaves a tombstone, the late write finds it and takes it off — else the row
    would wait for ever (a false lag alert, perhaps a paused map). A duplicate delivery's tombstone is pruned."""
    p = parts
    maps_for = p.waiting._maps_for
    publisher_side = WaitingChanges(p.store, maps_for, flush_seconds=60)  # the ingest instance: not written yet
    fast, other = change(4), change(1)
    await publisher_side.queued([fast, other])
    p.observer.observe(fast, "customers", "applied", "", 50.0)  # the apply instance, first
    await p.observer.flush()
    await publisher_side.flush()  # the late write
    assert (await p.waiting.oldest("customers") or {}).get("event_id") == other.event_id  # `fast` is not waiting

    p.observer.observe(other, "customers", "applied", "", 50.0)
    await p.observer.flush()
    p.observer.observe(other, "customers", "applied", "", 50.0)  # delivered twice: its row is gone, a tombstone
    await p.observer.flush()
    assert await p.waiting.oldest("customers") is None
    async for entity in p.store.table("opswaiting").query_entities("PartitionKey eq 'customers'"):
        assert entity["Done"], f"left waiting: {entity}"  # tombstones only, kept past duplicate detection's window


async def test_a_change_sent_again_after_its_outcome_does_not_wait_for_ever(parts: Parts) -> None:
    """F&O retries a whole POST answered 413 for another change of its array (3 retries, 1 s apart): ingest sends the
    changes it queued already again, under the same ids; duplicate detection drops them, so no outcome follows —
    they must not be recorded as waiting again."""
    p = parts
    ev = change(1)
    await p.waiting.queued([ev])
    await p.waiting.flush()
    p.observer.observe(ev, "customers", "applied", "", 50.0)
    await p.observer.flush()
    assert await p.waiting.oldest("customers") is None
    await p.waiting.queued([ev])  # the retry: same event id, dropped by duplicate detection
    await p.waiting.flush()
    assert await p.waiting.oldest("customers") is None


async def test_a_tombstone_not_claimed_yet_outlives_a_console_read(parts: Parts) -> None:
    """Apply (one instance) finishes before the publisher (another) writes the row: the tombstone must outlive a
    console read or a lag watch in between, or the late row would wait for ever."""
    p = parts
    publisher_side = WaitingChanges(p.store, p.waiting._maps_for, flush_seconds=60)
    ev = change(1)
    await publisher_side.queued([ev])
    p.observer.observe(ev, "customers", "applied", "", 50.0)
    await p.observer.flush()  # the tombstone
    assert await p.waiting.oldest("customers") is None  # the console looks
    await publisher_side.flush()  # the late write
    assert await p.waiting.oldest("customers") is None


async def test_a_change_merged_into_a_later_one_of_its_row_is_not_left_waiting(parts: Parts) -> None:
    """Apply merges a row's changes within one batch and logs the earlier one under no map ("-", superseded): its
    rows — one per map reading it — are taken off all the same."""
    p = parts
    earlier = change(2)
    await p.waiting.queued([earlier])
    await p.waiting.flush()
    assert (await p.waiting.oldest("customers") or {}).get("event_id") == earlier.event_id
    p.observer.observe(earlier, "-", "skipped-superseded", "merged into a later change of its row", 0.0)
    await p.observer.flush()
    assert await p.waiting.oldest("customers") is None
