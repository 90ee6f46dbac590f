"""Puts `ChangeEvent`s on the `changes` queue: one message per change, a POST's changes in one batch send."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient, ServiceBusSender
from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusError

from shared.bus.lanes import session_for
from shared.events.model import ChangeEvent

log = logging.getLogger(__name__)


class BusUnavailable(RuntimeError):
    """Service Bus could not take the changes; nothing is acknowledged, so the sender retries."""


class ChangePublisher(Protocol):
    async def publish(self, events: Sequence[ChangeEvent]) -> None: ...


class QueueWatcher(Protocol):
    """Told of every change before it is queued, and again if the send failed (the console's lag, `shared.ops`);
    it must not wait for I/O."""

    async def queued(self, events: Sequence[ChangeEvent]) -> None: ...

    async def unqueued(self, events: Sequence[ChangeEvent]) -> None: ...


def to_message(event: ChangeEvent, lanes: int) -> ServiceBusMessage:
    return ServiceBusMessage(
        event.model_dump_json(),
        message_id=event.event_id,  # duplicate detection drops a redelivered notification
        session_id=session_for(event, lanes),  # one row's changes are applied in order
        content_type="application/json",
        subject=event.entity,
        correlation_id=event.correlation_id,
        application_properties={"source": str(event.source), "entity": event.entity, "operation": str(event.operation)},
    )


@dataclass(eq=False)
class _Pending:
    messages: list[ServiceBusMessage]
    done: asyncio.Future[None]
    events: Sequence[ChangeEvent] = ()


class ServiceBusChangePublisher:
    """One sender per process, opened on first use and reopened after a failure.

    The SDK's async sender takes one send at a time, so concurrent requests are group-committed: each request's
    changes wait for the sender, and whatever gathered meanwhile goes out as one batch. A request is answered only
    when its own changes are on the queue; if their batch fails, every request in it is refused (the senders
    retry, and duplicate detection drops what had already arrived).
    """

    def __init__(
        self, client: ServiceBusClient, queue: str, timeout_seconds: float, lanes: int,
        watcher: QueueWatcher | None = None,
    ) -> None:  # fmt: skip
        self._client = client
        self._watcher = watcher
        self._lanes = lanes
        self._queue = queue
        self._timeout = timeout_seconds
        self._sender: ServiceBusSender | None = None
        self._waiting: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._scheduler: ServiceBusSender | None = None
        self._schedule_lock = asyncio.Lock()

    async def publish(self, events: Sequence[ChangeEvent]) -> None:
        if not events:
            return
        pending = _Pending(
            [to_message(e, self._lanes) for e in events], asyncio.get_running_loop().create_future(), events
        )
        self._waiting.append(pending)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:
            await asyncio.wait_for(asyncio.shield(pending.done), self._timeout)
        except TimeoutError as exc:
            raise BusUnavailable(
                f"Service Bus did not take {len(events)} change(s) within {self._timeout:g} s"
            ) from exc
        except (ServiceBusError, OSError) as exc:
            raise BusUnavailable(f"Service Bus did not accept {len(events)} change(s): {type(exc).__name__}") from exc

    async def _flush(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            events = [e for p in group for e in p.events]
            if self._watcher is not None:
                await self._watcher.queued(events)  # recorded in memory, written in the background
            try:
                # Bounded: a send the broker never acknowledges (seen with 32 webhooks at once against the local
                # broker; the SDK's concurrent-send hangs, Azure/azure-sdk-for-python#19376, #36334) would hold every
                # later request behind it for good. Timed out, the link is dropped and a new one opened; the
                # requests in it are refused (503), and a copy that did land is dropped as a duplicate on retry.
                await asyncio.wait_for(self._send([m for p in group for m in p.messages]), self._timeout)
            except Exception as exc:
                await self._reset()
                if self._watcher is not None:
                    await self._watcher.unqueued(events)
                for p in group:
                    if not p.done.done():
                        p.done.set_exception(exc)
                        p.done.exception()  # retrieved: a request that timed out already must not warn
            else:
                for p in group:
                    if not p.done.done():
                        p.done.set_result(None)

    async def _send(self, messages: list[ServiceBusMessage]) -> None:
        if self._sender is None:
            self._sender = self._client.get_queue_sender(self._queue)
        sender = self._sender
        batch = await sender.create_message_batch()
        for message in messages:
            try:
                batch.add_message(message)
            except MessageSizeExceededError:
                # Over one batch's size: send what fits and go on (a failure part-way is retried whole, see above).
                await sender.send_messages(batch)
                batch = await sender.create_message_batch()
                batch.add_message(message)
        await sender.send_messages(batch)

    async def _reset(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                await asyncio.wait_for(sender.close(), 5.0)
            except Exception:  # closing a broken link may fail too; the next send opens a new one
                log.debug("closing a failed sender", exc_info=True)

    async def schedule(self, event: ChangeEvent, after: float, attempt: int) -> None:
        """The change again, `after` seconds from now, as a new message (its own id, so duplicate detection keeps
        it) in the same session."""
        message = to_message(event, self._lanes)
        message.message_id = f"{event.event_id}:retry:{attempt}"
        message.application_properties = {**(message.application_properties or {}), "attempt": attempt}
        async with self._schedule_lock:
            if self._scheduler is None:
                self._scheduler = self._client.get_queue_sender(self._queue)
            try:
                await self._scheduler.schedule_messages(message, datetime.now(UTC) + timedelta(seconds=after))
            except (ServiceBusError, OSError) as exc:
                scheduler, self._scheduler = self._scheduler, None
                await scheduler.close()
                raise BusUnavailable(f"could not schedule a retry: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._reset()
        if self._scheduler is not None:
            await self._scheduler.close()
            self._scheduler = None
