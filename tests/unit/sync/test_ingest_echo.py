"""The notification of the bridge's own write into Dataverse is acknowledged and not queued: apply would skip it
unread (its tag), so queueing it would cost a message, a delivery and an invocation for nothing."""

from __future__ import annotations

from collections.abc import Sequence

from shared.events.bindings import load_bindings
from shared.events.model import ChangeEvent, Side
from shared.ingest.service import IngestService
from shared.ingest.wiring import mapped_entities
from shared.maps.loader import load_maps
from shared.sync.plan import TAG_PREFIX
from tests.unit.events.builders import body, context, entity

MAPS = load_maps()
ROW = "00000000-0000-4000-8000-0000000000e1"


class Queue:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    async def publish(self, events: Sequence[ChangeEvent]) -> None:
        self.events.extend(events)


async def _ingest(shared: dict[str, str]) -> tuple[int, int, Queue]:
    queue = Queue()
    service = IngestService(queue, load_bindings(), catalog=MAPS, entity_filter=mapped_entities(MAPS))
    target = entity("account", ROW, {"name": "Contoso", "accountnumber": "E1"})
    result = await service.receive(Side.DATAVERSE, body(context("Update", "account", ROW, target, shared=shared)), {})
    return len(result.accepted), len(result.ignored), queue


async def test_our_own_write_is_acknowledged_not_queued() -> None:
    accepted, ignored, queue = await _ingest({"tag": f"{TAG_PREFIX}some-change"})
    assert (accepted, ignored, queue.events) == (0, 1, [])


async def test_a_persons_write_and_another_tag_are_queued() -> None:
    for shared in ({}, {"tag": "someone-else:1"}):
        accepted, ignored, queue = await _ingest(shared)
        assert (accepted, ignored, len(queue.events)) == (1, 0, 1)
