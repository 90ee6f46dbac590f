"""One long-lived sender per queue, for the bridge's own messages (sync steps): opening a sender link costs the
Service Bus SDK about half a second of AMQP handshakes (open, begin, the CBS token, attach; it reads one frame per
50 ms poll) and closing it half a second more — paid for every message by `async with get_queue_sender(...)`. A send
that fails or hangs drops the link; the next send opens a new one."""

from __future__ import annotations

import asyncio
import contextlib

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender

SEND_TIMEOUT_SECONDS = 30.0  # a send the broker never acknowledges must not hold its caller for ever


class QueueSender:
    def __init__(self, client: ServiceBusClient, queue: str, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        self._client = client
        self._queue = queue
        self._timeout = timeout
        self._sender: ServiceBusSender | None = None
        self.opened = 0  # links opened so far (one, while sends succeed)
        self._lock = asyncio.Lock()  # one send at a time on the link (the SDK's sender is not for concurrent use)

    async def send(self, message: ServiceBusMessage) -> None:
        async with self._lock:
            if self._sender is None:
                self._sender = self._client.get_queue_sender(self._queue)
                self.opened += 1
            try:
                await asyncio.wait_for(self._sender.send_messages(message), self._timeout)
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            with contextlib.suppress(Exception):  # closing a broken link may fail too
                await asyncio.wait_for(sender.close(), 5.0)

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
