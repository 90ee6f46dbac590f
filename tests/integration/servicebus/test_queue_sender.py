"""The bridge's long-lived queue sender (`shared.bus.sender`) against the local broker: one link for many sends, a
new one after a failure or a close, every message delivered in order."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import ServiceBusError

from shared.bus.sender import QueueSender


@pytest.fixture
async def client(sb_connection: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(sb_connection, retry_total=1, retry_backoff_factor=0.1) as c:
        yield c


async def _bodies(client: ServiceBusClient, queue: str, count: int) -> list[str]:
    got: list[str] = []
    async with client.get_queue_receiver(queue, max_wait_time=2) as receiver:
        while len(got) < count:
            batch = await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=2)
            if not batch:
                break
            for message in batch:
                got.append(str(message))
                await receiver.complete_message(message)
    return got


async def test_many_sends_share_one_link_and_a_closed_sender_opens_another(
    client: ServiceBusClient, fresh_queue: Callable[[str], str]
) -> None:
    queue = fresh_queue("plain")
    sender = QueueSender(client, queue)
    for n in range(3):
        await sender.send(ServiceBusMessage(f"step {n}"))
    assert sender.opened == 1
    await sender.close()
    await sender.send(ServiceBusMessage("step 3"))
    assert sender.opened == 2
    await sender.close()
    assert await _bodies(client, queue, 4) == ["step 0", "step 1", "step 2", "step 3"]


async def test_a_failed_send_drops_its_link_and_the_next_opens_a_new_one(client: ServiceBusClient) -> None:
    sender = QueueSender(client, "no-such-queue")
    for attempt in (1, 2):
        with pytest.raises(ServiceBusError):
            await sender.send(ServiceBusMessage("lost"))
        assert sender.opened == attempt
    await sender.close()
