"""The dead letters of `changes` on the real broker: a change applied since (its error resolved by a replay or a
resubmission) is settled — completed, not only hidden — whether its replay settles it or the list finds it; a
resubmitted one leaves the dead letters once its copy is queued; the others stay, untouched."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from local.servicebus.config import DEFAULT_CONFIG
from shared.events.model import ChangeEvent, Operation, Side
from shared.ops.deadletters import DeadLetters
from shared.ops.ids import replay_event_id
from tests import stack


@pytest.fixture(scope="module")
def servicebus() -> Iterator[str]:
    with stack.broker(DEFAULT_CONFIG) as connection:
        yield connection


def change() -> ChangeEvent:
    number = f"D{uuid.uuid4().hex[:6]}"
    return ChangeEvent(event_id=f"fno-{number}", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                       row_id=number, occurred_at=datetime.now(UTC))  # fmt: skip


async def dead_letter(client: ServiceBusClient, events: list[ChangeEvent]) -> None:
    """Each change queued, then dead-lettered as the host does after MaxDeliveryCount."""
    async with client.get_queue_sender("changes") as sender:
        for e in events:
            await sender.send_messages(ServiceBusMessage(e.model_dump_json(), message_id=e.event_id, session_id="s1"))
    async with client.get_queue_receiver("changes", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=5) as rx:
        left = len(events)
        while left:
            for message in await rx.receive_messages(max_message_count=left, max_wait_time=5):
                await rx.dead_letter_message(message, reason="MaxDeliveryCountExceeded")
                left -= 1


async def dead_lettered(client: ServiceBusClient) -> set[str]:
    async with client.get_queue_receiver("changes", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as rx:
        return {str(m.message_id) for m in await rx.peek_messages(max_message_count=250)}


async def test_applied_changes_leave_the_dead_letters_and_the_others_stay(servicebus: str) -> None:
    replayed, found_later, resubmitted, still_broken = change(), change(), change(), change()
    async with ServiceBusClient.from_connection_string(servicebus) as client:
        await dead_letter(client, [replayed, found_later, resubmitted, still_broken])
        letters = DeadLetters(client, "changes")
        ids = {replayed.event_id, found_later.event_id, resubmitted.event_id, still_broken.event_id}
        assert ids <= await dead_lettered(client)

        # A replay brought it over: the observer settles its dead letter by the original's event id.
        assert await letters.settle_event(replay_event_id(replayed.event_id, 1)) == 1
        assert replayed.event_id not in await dead_lettered(client)

        # Its replay succeeded before it reached the dead letters: the list settles it instead of showing it.
        async def resolved(event: dict[str, Any]) -> bool:
            return bool(event["event_id"] == found_later.event_id)

        shown = await letters.browse(100, None, resolved)
        assert found_later.event_id not in {d["event"]["event_id"] for d in shown}
        assert found_later.event_id not in await dead_lettered(client)

        # Resubmitted: the copy is queued, the dead letter gone.
        (letter,) = [d for d in shown if d["event"]["event_id"] == resubmitted.event_id]
        answer = await letters.resubmit(int(letter["id"]), "r1")
        assert answer["resubmitted_as"] == f"{resubmitted.event_id}:resubmitted:r1"
        assert await dead_lettered(client) & ids == {still_broken.event_id}  # untouched
        async with client.get_queue_receiver("changes", session_id="s1", max_wait_time=5) as rx:
            (copy,) = await rx.receive_messages(max_message_count=1, max_wait_time=5)
            body = ChangeEvent.model_validate_json(b"".join(bytes(b) for b in copy.body))
            assert body.event_id == replay_event_id(resubmitted.event_id, "r1")  # its outcome closes its error
            await rx.complete_message(copy)
