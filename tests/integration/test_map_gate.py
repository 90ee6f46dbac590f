"""The maps' check at start-up against the real ledger (Azurite): run once per process and cached; unreadable
metadata leaves the maps running and is tried again later; a failing map is invalid (held, with its reasons), a map
an operator paused stays paused; and a state read that overlaps a state change is never cached as running."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.bus.publisher import ServiceBusChangePublisher
from shared.ledger.tables import Ledger
from shared.maps.check import CheckProblem
from shared.maps.loader import MapSet, load_maps
from shared.maps.metadata import CheckReport, MetadataUnavailable
from shared.sync.control import MapControl, MapGate


@pytest.fixture
async def ledger(storage_connection_string: str) -> AsyncIterator[Ledger]:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        yield Ledger(service, prefix=f"g{uuid.uuid4().hex[:8]}")


class Environment:
    """What the apps' metadata says, as the test sets it: unreadable, or these problems."""

    def __init__(self, maps: MapSet) -> None:
        self.maps = maps
        self.readable = False
        self.problems: list[CheckProblem] = []
        self.reads = 0

    async def check(self) -> CheckReport:
        self.reads += 1
        if not self.readable:
            raise MetadataUnavailable("F&O $metadata could not be read: connection refused")
        return CheckReport(list(self.maps.order), list(self.problems))


async def test_the_gate_checks_once_retries_unreadable_metadata_and_holds_failing_maps(ledger: Ledger) -> None:
    maps = load_maps()
    environment = Environment(maps)
    # No map is released in this test, so nothing is published: the gate never needs the bus here.
    control = MapControl(maps, ledger, cast(ServiceBusChangePublisher, None), environment.check)
    gate = MapGate(lambda: control, retry_seconds=0.3)

    await gate.ensure()  # unreadable: the maps keep running
    assert environment.reads == 1 and not await ledger.is_paused("customers")
    await gate.ensure()  # not again before retry_seconds
    assert environment.reads == 1

    await ledger.set_map_state("vendors", "paused", "by an operator")
    environment.readable = True
    reason = "text of up to 20 characters into a column of 10"
    environment.problems = [
        CheckProblem("customers", "dataverse account.accountnumber", reason),
        CheckProblem("vendors", "fno VendorsV2.Nope", "the column does not exist in F&O"),
    ]
    await asyncio.sleep(0.35)
    await asyncio.gather(gate.ensure(), gate.ensure(), gate.ensure())  # concurrent first changes: one check
    assert environment.reads == 2
    customers = await ledger.map_state("customers")
    assert customers["state"] == "invalid" and await ledger.is_paused("customers")
    assert customers["problems"] == [{"field": "dataverse account.accountnumber", "reason": reason}]
    assert (await ledger.map_state("vendors"))["state"] == "paused"  # an operator's pause is kept
    assert (await ledger.map_state("currencies"))["state"] == "running"

    await asyncio.sleep(0.35)
    await gate.ensure()  # done: cached for the process
    assert environment.reads == 2


async def test_a_state_read_overlapping_a_change_is_not_cached_as_running(ledger: Ledger) -> None:
    await ledger.map_state("customers")  # tables exist, the map runs
    ledger._running_until.clear()
    reading = asyncio.create_task(ledger.map_state("customers"))  # starts before the change, may end after it
    await ledger.set_map_state("customers", "invalid", "failed its check")
    await reading
    assert await ledger.is_paused("customers")
