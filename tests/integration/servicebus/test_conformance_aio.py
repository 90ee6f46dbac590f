"""The local broker, driven through the real azure-servicebus SDK's async client (`azure.servicebus.aio`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageLockLostError, OperationTimeoutError, ServiceBusAuthenticationError

Fresh = Callable[[str], str]


@pytest.fixture
async def client(sb_connection: str) -> AsyncIterator[ServiceBusClient]:
    async with ServiceBusClient.from_connection_string(sb_connection, retry_total=1, retry_backoff_factor=0.1) as c:
        yield c


async def _receive(receiver, count: int, wait: float = 2) -> list:  # type: ignore[no-untyped-def,type-arg]
    got: list = []  # type: ignore[type-arg]
    while len(got) < count:
        batch = await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=wait)
        if not batch:
            break
        got += batch
    return got


async def test_single_list_and_batch_sends_then_complete(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    async with client.get_queue_sender(q) as sender:
        await sender.send_messages(ServiceBusMessage("one", application_properties={"k": "v"}))
        await sender.send_messages([ServiceBusMessage("two"), ServiceBusMessage("three")])
        batch = await sender.create_message_batch()
        batch.add_message(ServiceBusMessage("four"))
        await sender.send_messages(batch)
    async with client.get_queue_receiver(q) as receiver:
        got = await _receive(receiver, 4)
        assert [str(m) for m in got] == ["one", "two", "three", "four"]
        assert got[0].application_properties == {b"k": b"v"}
        for m in got:
            await receiver.complete_message(m)
        assert await receiver.receive_messages(max_wait_time=0.5) == []


async def test_unknown_entity(client: ServiceBusClient) -> None:
    with pytest.raises(ServiceBusAuthenticationError) as info:
        async with client.get_queue_sender("missing") as sender:
            await sender.send_messages(ServiceBusMessage("x"))
    assert "Status code: 404" in info.value.exc_msg


async def test_abandon_dead_letter_and_lock_lost(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")  # LockDuration PT2S, MaxDeliveryCount 3
    async with client.get_queue_sender(q) as sender:
        await sender.send_messages([ServiceBusMessage("a"), ServiceBusMessage("b")])
    async with client.get_queue_receiver(q) as receiver:
        a, b = await _receive(receiver, 2)
        await receiver.abandon_message(a)
        await receiver.dead_letter_message(b, reason="Bad", error_description="because")
        (again,) = await _receive(receiver, 1)
        assert str(again) == "a" and again.delivery_count == 1
        await asyncio.sleep(2.3)
        with pytest.raises(MessageLockLostError):
            await receiver.complete_message(again)
    async with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
        (dead,) = await _receive(dlq, 1)
        assert str(dead) == "b" and dead.dead_letter_reason == "Bad" and dead.dead_letter_error_description == "because"
        await dlq.complete_message(dead)


async def test_defer_peek_renew_and_receive_and_delete(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    async with client.get_queue_sender(q) as sender:
        await sender.send_messages([ServiceBusMessage("deferred"), ServiceBusMessage("kept")])
    async with client.get_queue_receiver(q) as receiver:
        first, second = await _receive(receiver, 2)
        await receiver.defer_message(first)
        until = await receiver.renew_message_lock(second)
        assert until > datetime.now(UTC)
        await receiver.abandon_message(second)
        peeked = await receiver.peek_messages(max_message_count=5, sequence_number=first.sequence_number)
        assert [(str(m), m.state) for m in peeked] == [
            ("deferred", ServiceBusMessageState.DEFERRED),
            ("kept", ServiceBusMessageState.ACTIVE),
        ]
        (deferred,) = await receiver.receive_deferred_messages([first.sequence_number])
        await receiver.complete_message(deferred)
    async with client.get_queue_receiver(q, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE) as receiver:
        (m,) = await _receive(receiver, 1)
        assert str(m) == "kept"
    async with client.get_queue_receiver(q) as receiver:
        assert await receiver.peek_messages(max_message_count=5) == []


async def test_schedule_and_cancel(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    at = datetime.now(UTC) + timedelta(seconds=2)
    async with client.get_queue_sender(q) as sender:
        seqs = await sender.schedule_messages([ServiceBusMessage("keep"), ServiceBusMessage("drop")], at)
        await sender.cancel_scheduled_messages(seqs[1])
    async with client.get_queue_receiver(q) as receiver:
        (m,) = await _receive(receiver, 1, wait=6)
        assert str(m) == "keep" and datetime.now(UTC) >= at - timedelta(milliseconds=100)
        await receiver.complete_message(m)
        assert await receiver.receive_messages(max_wait_time=0.5) == []


async def test_sessions_in_order_with_state_and_parallel_sessions(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    async with client.get_queue_sender(q) as sender:
        await sender.send_messages(
            [ServiceBusMessage(f"{sid}{i}", session_id=sid) for i in range(3) for sid in ("a", "b")]
        )

    async def drain_one_session() -> tuple[str, list[str]]:
        async with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2) as receiver:
            sid = receiver.session.session_id
            await receiver.session.set_state(b"seen")
            assert await receiver.session.get_state() == b"seen"
            await receiver.session.renew_lock()
            got = await _receive(receiver, 3)
            for m in got:
                await receiver.complete_message(m)
            return sid, [str(m) for m in got]

    results = dict(await asyncio.gather(drain_one_session(), drain_one_session()))
    assert results == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}
    with pytest.raises(OperationTimeoutError):
        async with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
            await receiver.receive_messages(max_wait_time=1)
