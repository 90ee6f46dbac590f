"""The metadata reads stay few when things go wrong: once the options are past their TTL and Dataverse's metadata is
down or slow, a burst of notifications sends one read, not one each in turn through the per-table lock (the Nth
would wait N x the timeout); and a virtual table no map reads costs no read at all (ingest ignores its changes)."""

from __future__ import annotations

import asyncio
import time

from shared.connectors.errors import Transient
from shared.events.model import Side
from tests.unit.events.test_enum_cache import Clock, Dataverse, notification, service


async def test_after_the_ttl_a_failing_metadata_read_is_not_repeated_for_every_change() -> None:
    clock = Clock()
    dataverse = Dataverse()
    ingest, queue = service(dataverse, clock, timeout=0.2)
    await ingest.receive(Side.FNO, notification("X-0"), {})
    assert dataverse.requests == 1
    clock.now += 901  # past the TTL; and now Dataverse's metadata answers nothing in time
    dataverse.answer, dataverse.delay = Transient("down", status=503), 1.0
    started = time.monotonic()
    await asyncio.gather(*(ingest.receive(Side.FNO, notification(f"X-{i}"), {}) for i in range(1, 11)))
    took = time.monotonic() - started
    assert len(queue.events) == 11
    assert dataverse.requests == 2, f"{dataverse.requests - 1} metadata reads for 10 changes, {took:.1f} s"
    assert took < 0.6, f"the 10 notifications took {took:.1f} s (one timeout each, in turn)"


async def test_an_unmapped_virtual_tables_events_read_no_metadata() -> None:
    """A data event of a virtual table no map reads — or any PrimaryEntityName a sender puts in — is not decoded:
    no metadata read on the webhook's path, no cache entry or lock per name."""
    from shared.ingest.enums import VirtualTableEnums
    from shared.ingest.service import IngestService
    from shared.ingest.wiring import mapped_entities
    from tests.unit.events.builders import body, context, entity, option
    from tests.unit.events.test_enum_cache import MAPS, Queue

    dataverse = Dataverse()
    enums = VirtualTableEnums(dataverse.read, clock=Clock())
    ingest = IngestService(Queue(), {}, catalog=MAPS, entity_filter=mapped_entities(MAPS), enums=enums)
    for i in range(3):
        table = f"mserp_notmapped{i}entity"
        target = entity(table, f"00000000-0000-4000-8000-00000000000{i}", {"mserp_status": option(200000001)})
        result = await ingest.receive(Side.FNO, body(context("OnExternalCreated", table, "0" * 8 + "-0000-0000-0000-"
                                                             + "0" * 12, target)), {})  # fmt: skip
        assert not result.accepted
    assert dataverse.requests == 0, f"{dataverse.requests} metadata reads for changes ingest then ignored"
