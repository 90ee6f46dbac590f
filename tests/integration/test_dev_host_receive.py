"""The dev host's session receive, against the local broker and the real async SDK: as the Functions host (the .NET
SDK) receives — what the link holds already comes back at once, not after waiting for a newer message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver

from local.host.servicebus import FILL_READ_SECONDS, SETTLE_READ_SECONDS, buffered, reading_in_steps_of, receive
from tests import stack

WAIT = 30.0  # a receive that waited for a new message would take this long; every bound below is far shorter


@pytest.fixture(scope="module")
def connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("sbreceive")
    queue = {"Name": "lanes", "Properties": {"RequiresSession": True, "LockDuration": "PT30S"}}
    (tmp / "Config.json").write_text(json.dumps({"UserConfig": {"Namespaces": [{"Name": "ns", "Queues": [queue]}]}}))
    with stack.broker(tmp / "Config.json") as conn:
        yield conn


async def _until_buffered(receiver: ServiceBusReceiver, count: int) -> None:
    """Lets the receiver read frames (the Python SDK reads only inside its calls) until it holds `count`."""
    for _ in range(200):
        if buffered(receiver) >= count:
            return
        await receiver._handler.do_work_async()
    raise AssertionError(f"the receiver holds {buffered(receiver)} messages, not {count}: has the SDK changed?")


async def test_what_the_link_holds_comes_back_at_once_in_order(connection: str, tmp_path: Path) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_sender("lanes") as sender:
            await sender.send_messages([ServiceBusMessage(f"a{i}", session_id="lane-a") for i in range(5)])
        async with client.get_queue_receiver("lanes", session_id="lane-a", prefetch_count=100) as receiver:
            first = await receiver.receive_messages(max_message_count=1, max_wait_time=WAIT)
            await _until_buffered(receiver, 4)
            # The SDK's own receive_messages would now wait WAIT seconds for a fifth, newer message.
            rest = await asyncio.wait_for(receive(receiver, 100, WAIT), timeout=WAIT / 3)
            assert [str(m) for m in first + rest] == [f"a{i}" for i in range(5)]
            assert buffered(receiver) == 0
            for message in first + rest:
                await receiver.complete_message(message)


async def test_with_nothing_held_the_first_message_to_come_is_returned_with_what_came_with_it(
    connection: str,
) -> None:
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_receiver("lanes", session_id="lane-b", prefetch_count=100) as receiver:
            waiting = asyncio.create_task(receive(receiver, 100, WAIT))
            await asyncio.sleep(0.5)
            async with client.get_queue_sender("lanes") as sender:
                await sender.send_messages([ServiceBusMessage(f"b{i}", session_id="lane-b") for i in range(3)])
            got = await asyncio.wait_for(waiting, timeout=WAIT / 3)
            while len(got) < 3:
                got += await asyncio.wait_for(receive(receiver, 100, WAIT), timeout=WAIT / 3)
            assert [str(m) for m in got] == ["b0", "b1", "b2"]
            for message in got:
                await receiver.complete_message(message)
            assert await receive(receiver, 100, 0.5) == []  # an idle session: nothing, after the wait


async def test_shorter_reads_while_filling_or_settling_overlap_and_end_with_the_sdk_s_own(connection: str) -> None:
    """A fill beside the previous batch's settlement: the shortest step holds while both run, and the SDK's own read
    timeout (0.2 s) is back once both end — a short one left behind would wake an idle receiver 200 times a second."""
    async with ServiceBusClient.from_connection_string(connection) as client:
        async with client.get_queue_receiver("lanes", session_id="lane-c", prefetch_count=100) as receiver:
            handler = receiver._handler
            connection_ = handler._connection
            sdk_own = handler._socket_timeout
            assert sdk_own == connection_._socket_timeout == 0.2  # has the SDK changed? (the helper relies on it)
            fill = reading_in_steps_of(receiver, FILL_READ_SECONDS)
            settle = reading_in_steps_of(receiver, SETTLE_READ_SECONDS)
            fill.__enter__()
            settle.__enter__()
            assert handler._socket_timeout == connection_._socket_timeout == SETTLE_READ_SECONDS
            fill.__exit__(None, None, None)  # the fill ends first: the settlement keeps its step
            assert handler._socket_timeout == connection_._socket_timeout == SETTLE_READ_SECONDS
            settle.__exit__(None, None, None)
            assert handler._socket_timeout == connection_._socket_timeout == sdk_own
