"""A send Service Bus never acknowledges must not hold every later change behind it for good (seen with 32 webhooks
at once against the local broker; the SDK's own concurrent-send hangs, Azure/azure-sdk-for-python#19376): the
waiting requests are refused within the timeout (503: the app retries), the link is dropped, and the next change
goes out on a new one."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.bus.publisher import BusUnavailable, ServiceBusChangePublisher
from shared.events.model import ChangeEvent, Operation, Side


class Batch(list[Any]):
    def add_message(self, message: Any) -> None:
        self.append(message)


class Sender:
    def __init__(self, hang: bool) -> None:
        self.hang, self.sent, self.closed = hang, [], False

    async def create_message_batch(self) -> Batch:
        return Batch()

    async def send_messages(self, batch: Batch) -> None:
        if self.hang:
            await asyncio.Event().wait()  # no acknowledgement, ever
        self.sent.extend(batch)

    async def close(self) -> None:
        self.closed = True


class Client:
    """The SDK client's one method the publisher uses: a first link that hangs, then good ones."""

    def __init__(self) -> None:
        self.senders: list[Sender] = []

    def get_queue_sender(self, queue: str) -> Sender:
        self.senders.append(Sender(hang=not self.senders))
        return self.senders[-1]


def change(n: int) -> ChangeEvent:
    return ChangeEvent(event_id=f"e{n}", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                       row_id="{1}", occurred_at=datetime.now(UTC))  # fmt: skip


async def test_a_send_never_acknowledged_is_refused_in_time_and_the_next_goes_out_on_a_new_link() -> None:
    client = Client()
    publisher = ServiceBusChangePublisher(client, "changes", timeout_seconds=0.3, lanes=16)  # type: ignore[arg-type]
    with pytest.raises(BusUnavailable):
        await asyncio.wait_for(publisher.publish([change(1)]), 5)
    await asyncio.wait_for(publisher.publish([change(2)]), 5)
    first, second = client.senders
    assert first.closed and [m.message_id for m in second.sent] == ["e2"]
