"""Runs Service Bus-triggered functions the way the Functions host does, with the real async SDK.

Per trigger: receivers on its queue (one session at a time per worker when `isSessionsEnabled`), concurrency,
auto-complete and lock renewal from host.json's `extensions.serviceBus`; each message becomes a faithful
`func.ServiceBusMessage`; success completes it, an exception abandons it, so a message that keeps failing is
dead-lettered by the broker after MaxDeliveryCount — as in Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import ssl
import time
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage as ConcreteServiceBusMessage  # what the worker builds
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusReceivedMessage
from azure.servicebus.aio import AutoLockRenewer, ServiceBusClient, ServiceBusReceiver
from azure.servicebus.amqp import AmqpMessageBodyType
from azure.servicebus.exceptions import OperationTimeoutError, ServiceBusError

from local.host.functions import ServiceBusTriggerSpec
from local.host.invoke import invoke

log = logging.getLogger("local.host")

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def parse_timespan(value: str) -> timedelta:
    """host.json durations are .NET TimeSpans: `hh:mm:ss`, `d.hh:mm:ss`, optional fraction."""
    m = _TIMESPAN.match(value.strip())
    if not m:
        raise ValueError(f"not a TimeSpan (hh:mm:ss): {value!r}")
    days, hours, minutes, seconds, fraction = m.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds) + (float(f"0.{fraction}") if fraction else 0.0),
    )


@dataclass(frozen=True)
class ServiceBusOptions:
    """host.json `extensions.serviceBus`, with the Functions host's defaults for what it leaves out."""

    max_concurrent_calls: int = 16
    max_concurrent_sessions: int = 8
    auto_complete_messages: bool = True
    max_auto_lock_renewal_duration: timedelta = timedelta(minutes=5)
    session_idle_timeout: timedelta = timedelta(seconds=5)
    prefetch_count: int = 0
    max_message_batch_size: int = 1000  # per invocation of a cardinality-many trigger (the extension's default)
    # A batch trigger waits for at least this many messages, but no longer than max_batch_wait_time (extension 5.x:
    # `minMessageBatchSize`, `maxBatchWaitTime`; defaults 1 and 30 s).
    min_message_batch_size: int = 1
    max_batch_wait_time: timedelta = timedelta(seconds=30)

    @classmethod
    def from_host_json(cls, host_json: dict[str, Any]) -> ServiceBusOptions:
        sb = host_json.get("extensions", {}).get("serviceBus", {}) or {}
        defaults = cls()
        idle = sb.get("sessionIdleTimeout")
        renewal = sb.get("maxAutoLockRenewalDuration")
        return cls(
            max_concurrent_calls=int(sb.get("maxConcurrentCalls", defaults.max_concurrent_calls)),
            max_concurrent_sessions=int(sb.get("maxConcurrentSessions", defaults.max_concurrent_sessions)),
            auto_complete_messages=bool(sb.get("autoCompleteMessages", defaults.auto_complete_messages)),
            max_auto_lock_renewal_duration=parse_timespan(renewal)
            if renewal
            else defaults.max_auto_lock_renewal_duration,
            session_idle_timeout=parse_timespan(idle) if idle else defaults.session_idle_timeout,
            prefetch_count=int(sb.get("prefetchCount", defaults.prefetch_count)),
            max_message_batch_size=int(sb.get("maxMessageBatchSize", defaults.max_message_batch_size)),
            min_message_batch_size=int(sb.get("minMessageBatchSize", defaults.min_message_batch_size)),
            max_batch_wait_time=parse_timespan(sb["maxBatchWaitTime"])
            if sb.get("maxBatchWaitTime")
            else defaults.max_batch_wait_time,
        )


@cache
def amqp_tls() -> ssl.SSLContext:
    """One TLS context for all receivers: without it the SDK loads the CA store for every link it opens."""
    return ssl.create_default_context()


def _text(value: object) -> object:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _body(message: ServiceBusReceivedMessage) -> bytes:
    raw = message.raw_amqp_message
    if raw.body_type == AmqpMessageBodyType.DATA:
        return b"".join(bytes(part) for part in message.body)
    if raw.body_type == AmqpMessageBodyType.VALUE:
        value = message.body
        if isinstance(value, bytes):
            return value
        return value.encode() if isinstance(value, str) else json.dumps(value).encode()
    return json.dumps([list(part) for part in message.body]).encode()


def to_function_message(message: ServiceBusReceivedMessage) -> func.ServiceBusMessage:
    """The message as the Python worker hands it to a function (delivery count 1-based, as .NET reports it)."""
    app_props = {str(_text(k)): _text(v) for k, v in (message.application_properties or {}).items()}
    delivery_count = (message.delivery_count or 0) + 1
    metadata = {
        "MessageId": message.message_id,
        "SessionId": message.session_id,
        "DeliveryCount": delivery_count,
        "SequenceNumber": message.sequence_number,
        "EnqueuedTimeUtc": message.enqueued_time_utc.isoformat() if message.enqueued_time_utc else None,
        "ApplicationProperties": app_props,
    }
    return ConcreteServiceBusMessage(
        body=_body(message),
        trigger_metadata=metadata,
        application_properties=app_props,
        user_properties=app_props,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        dead_letter_error_description=message.dead_letter_error_description,
        dead_letter_reason=message.dead_letter_reason,
        dead_letter_source=message.dead_letter_source,
        delivery_count=delivery_count,
        enqueued_sequence_number=message.enqueued_sequence_number,
        enqueued_time_utc=message.enqueued_time_utc,
        expires_at_utc=message.expires_at_utc,
        label=message.subject,
        locked_until=message.locked_until_utc,
        lock_token=str(message.lock_token) if message.lock_token else None,
        message_id=message.message_id or "",
        partition_key=message.partition_key,
        reply_to=message.reply_to,
        reply_to_session_id=message.reply_to_session_id,
        scheduled_enqueue_time_utc=message.scheduled_enqueue_time_utc,
        sequence_number=message.sequence_number,
        session_id=message.session_id,
        state=int(message.state) if message.state is not None else None,
        subject=message.subject,
        time_to_live=message.time_to_live,
        to=message.to,
    )


def _enqueued_at(messages: list[ServiceBusReceivedMessage]) -> float | None:
    """When the batch's oldest message was queued (the broker's clock, epoch seconds)."""
    enqueued = [m.enqueued_time_utc for m in messages if m.enqueued_time_utc is not None]
    return min(enqueued).timestamp() if enqueued else None


# The Functions host receives with the .NET SDK (`ServiceBusReceiver.ReceiveMessagesAsync`, AmqpReceiver.cs in
# Azure.Messaging.ServiceBus): messages the link already holds (prefetched) are returned at once; otherwise it waits up
# to the wait time for the first one, then 20 ms for more (`link.ReceiveMessagesAsync(maxMessages,
# TimeSpan.FromMilliseconds(20), maxWaitTime)`). The Python SDK's `receive_messages`, holding prefetched messages,
# still waits for a new one — up to the whole wait, a session's idle timeout — and then reads on for 0.2 s (its
# `_further_pull_receive_timeout`, and each read blocks up to the socket timeout, 0.2 s): a lane's next batch sat in
# the client while the lane had work. `receive` asks the SDK only for what it holds, or for one message; the count
# of what it holds is a private attribute of the Python SDK (7.x, pyamqp transport), which
# `tests/integration/test_dev_host_receive.py` checks.


def buffered(receiver: ServiceBusReceiver) -> int:
    """How many messages the receiver's link holds already (prefetched, not yet handed out)."""
    handler = getattr(receiver, "_handler", None)
    queue = getattr(handler, "_received_messages", None)
    return queue.qsize() if queue is not None else 0


async def receive(receiver: ServiceBusReceiver, count: int, wait: float) -> list[ServiceBusReceivedMessage]:
    """Up to `count` messages as the Functions host receives them: what the link holds, at once; else the first
    message to come within `wait` seconds, with what came with it."""
    if not buffered(receiver):
        first = await receiver.receive_messages(max_message_count=1, max_wait_time=wait)
        if not first or count == 1 or not (held := buffered(receiver)):
            return first
        return first + await receiver.receive_messages(max_message_count=min(count - 1, held), max_wait_time=wait)
    return await receiver.receive_messages(max_message_count=min(count, buffered(receiver)), max_wait_time=wait)


# A receive or a settlement ends only between two reads of the connection, and the Python SDK blocks each read up to
# its socket timeout (0.2 s) when nothing comes: a batch's wait overran `maxBatchWaitTime` by up to that much, and of
# settlements sent together, one whose outcome another had read waited out a whole read. While filling a batch or
# settling one, reads are shorter (a few more wake-ups per batch; shorter ones all the time cost the idle host CPU).
FILL_READ_SECONDS = 0.05
SETTLE_READ_SECONDS = 0.005
_read_steps: weakref.WeakKeyDictionary[ServiceBusReceiver, list[float]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def reading_in_steps_of(receiver: ServiceBusReceiver, seconds: float) -> Iterator[None]:
    """The receiver's connection reads block at most `seconds` meanwhile (the SDK's `_socket_timeout`, private: the
    client's for its receive loop, the connection's for a settlement's wait); of several at once (a fill beside the
    previous batch's settlement), the shortest."""
    handler: Any = getattr(receiver, "_handler", None)
    holders: list[Any] = [
        h
        for h in (handler, getattr(handler, "_connection", None))
        if isinstance(getattr(h, "_socket_timeout", None), float | int)
    ]
    if not holders:
        yield
        return
    steps = _read_steps.setdefault(receiver, [holders[0]._socket_timeout])  # [the SDK's own, then ours]
    steps.append(seconds)
    for h in holders:
        h._socket_timeout = min(steps)
    try:
        yield
    finally:
        steps.remove(seconds)
        for h in holders:
            h._socket_timeout = min(steps)


class ServiceBusTriggerRunner:
    """All Service Bus triggers of an app: one async client per connection setting, receivers per trigger."""

    def __init__(self, specs: list[ServiceBusTriggerSpec], options: ServiceBusOptions) -> None:
        self._specs = specs
        self._options = options
        self._clients: dict[str, ServiceBusClient] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    def _client(self, setting: str) -> ServiceBusClient:
        if setting not in self._clients:
            connection = os.environ.get(setting)
            if not connection:
                raise RuntimeError(f"the Service Bus trigger's connection setting {setting!r} is not set")
            self._clients[setting] = ServiceBusClient.from_connection_string(connection, ssl_context=amqp_tls())
        return self._clients[setting]

    def start(self) -> None:
        for spec in self._specs:
            client = self._client(spec.connection)
            if spec.is_sessions_enabled:
                workers = [self._session_worker(spec, client, n) for n in range(self._options.max_concurrent_sessions)]
            else:
                workers = [self._queue_worker(spec, client)]
            self._tasks += [asyncio.create_task(w) for w in workers]
            log.info("servicebus %-18s queue=%s sessions=%s", spec.name, spec.queue_name, spec.is_sessions_enabled)

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()

    def _auto_complete(self, spec: ServiceBusTriggerSpec) -> bool:
        return self._options.auto_complete_messages if spec.auto_complete is None else spec.auto_complete

    async def _run(
        self,
        spec: ServiceBusTriggerSpec,
        receiver: ServiceBusReceiver,
        messages: list[ServiceBusReceivedMessage],
        received_at: float | None = None,
    ) -> None:
        """One invocation: one message, or (cardinality many) the batch as a list. Settled together, as the
        Functions host does: success completes every message, an exception abandons every one.

        Its log line says where the batch's oldest message waited, in stages (epoch times, so that a change's own
        stages before the queue can be added from the app's log): `queued_ms` on the queue until a receive returned
        it, `batch_ms` gathering the batch, `duration_ms` the function, `settle_ms` settling the messages."""
        started_at = time.time()
        received_at = started_at if received_at is None else received_at
        argument: Any = [to_function_message(m) for m in messages] if spec.many else to_function_message(messages[0])
        first = messages[0]
        try:
            _, invocation_id, duration = await invoke(
                spec.handler, spec.name, spec.arg_name, argument, spec.wants_context
            )
        except Exception:
            duration = (time.time() - started_at) * 1000
            log.error(
                "invocation function=%s trigger=servicebus outcome=failed message_id=%s messages=%d "
                "delivery_count=%d duration_ms=%.1f\n%s",
                spec.name, first.message_id, len(messages), (first.delivery_count or 0) + 1, duration,
                traceback.format_exc(),
            )  # fmt: skip
            await self._settle(receiver, messages, complete=False)
            return
        ended_at = time.time()
        if self._auto_complete(spec):
            await self._settle(receiver, messages, complete=True)
        enqueued_at = _enqueued_at(messages)
        queued = max(0.0, (received_at - enqueued_at) * 1000) if enqueued_at is not None else 0.0
        log.info(
            "invocation function=%s trigger=servicebus outcome=succeeded message_id=%s messages=%d session=%s "
            "duration_ms=%.1f queued_ms=%.0f batch_ms=%.0f settle_ms=%.0f enqueued_at=%.3f started_at=%.3f "
            "invocation_id=%s",
            spec.name, first.message_id, len(messages), first.session_id, duration, queued,
            (started_at - received_at) * 1000, (time.time() - ended_at) * 1000, enqueued_at or 0.0, started_at,
            invocation_id,
        )  # fmt: skip

    async def _settle(
        self, receiver: ServiceBusReceiver, messages: list[ServiceBusReceivedMessage], *, complete: bool
    ) -> None:
        """Every message of the invocation at once, as the Functions host does (`Task.WhenAll` over the batch's
        completions, ServiceBusListener.cs in Microsoft.Azure.WebJobs.Extensions.ServiceBus): about one round trip to
        the broker, not one per message — under load, a batch of ten settled one by one took most of a second."""

        async def settle(message: ServiceBusReceivedMessage) -> None:
            try:
                if complete:
                    await receiver.complete_message(message)
                else:
                    await receiver.abandon_message(message)
            except ServiceBusError as exc:  # lock lost: the broker redelivers, as in Azure
                log.warning("could not settle %s: %s", message.message_id, exc)

        with reading_in_steps_of(receiver, SETTLE_READ_SECONDS):
            await asyncio.gather(*(settle(m) for m in messages))

    async def _fill(self, receiver: ServiceBusReceiver, room: int, have: int) -> list[ServiceBusReceivedMessage]:
        """More messages for a batch until it holds `minMessageBatchSize` or `maxBatchWaitTime` has passed."""
        wanted = min(self._options.min_message_batch_size, have + room) - have
        deadline = time.monotonic() + self._options.max_batch_wait_time.total_seconds()
        more: list[ServiceBusReceivedMessage] = []
        with reading_in_steps_of(receiver, FILL_READ_SECONDS):
            while len(more) < wanted and (left := deadline - time.monotonic()) > 0.01:
                got = await receive(receiver, room - len(more), left)
                if not got:
                    break
                more += got
        return more

    async def _queue_worker(self, spec: ServiceBusTriggerSpec, client: ServiceBusClient) -> None:
        """Up to maxConcurrentCalls messages in flight at once from one receiver."""
        limit = self._options.max_concurrent_calls
        renewal = self._options.max_auto_lock_renewal_duration.total_seconds()
        while not self._stopping.is_set():
            try:
                async with (
                    client.get_queue_receiver(spec.queue_name, prefetch_count=self._options.prefetch_count) as receiver,
                    AutoLockRenewer(max_lock_renewal_duration=renewal) as renewer,
                ):
                    in_flight: set[asyncio.Task[None]] = set()
                    while not self._stopping.is_set():
                        if len(in_flight) >= limit:
                            await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                            continue
                        size = self._options.max_message_batch_size if spec.many else limit - len(in_flight)
                        batch = await receiver.receive_messages(max_message_count=size, max_wait_time=1)
                        for message in batch:
                            renewer.register(receiver, message)
                        # cardinality many: the batch is one invocation; else one invocation per message
                        for group in [batch] if spec.many and batch else [[m] for m in batch]:
                            task = asyncio.create_task(self._run(spec, receiver, group))
                            in_flight.add(task)
                            task.add_done_callback(in_flight.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("receiver for %s failed (%s); reconnecting", spec.queue_name, exc)
                await asyncio.sleep(1)

    async def _session_worker(self, spec: ServiceBusTriggerSpec, client: ServiceBusClient, worker: int) -> None:
        """One session at a time, its messages strictly in order; the next session when this one goes idle.

        `maxConcurrentSessions` of these run side by side. Not so in Azure for a batch trigger (cardinality many):
        the extension's batch loop takes one session at a time per instance (ServiceBusListener.cs,
        RunBatchReceiveLoopAsync in Microsoft.Azure.WebJobs.Extensions.ServiceBus; Azure/azure-sdk-for-net#47981,
        Azure/azure-functions-dotnet-worker#3087) — more sessions at once need more instances."""
        idle = self._options.session_idle_timeout.total_seconds()
        renewal = self._options.max_auto_lock_renewal_duration.total_seconds()
        size = self._options.max_message_batch_size if spec.many else 1
        # The Functions host's receiver (the .NET SDK) keeps a message that reaches it between two receive calls for
        # the next call. With prefetch 0 the Python SDK releases it instead (settled first), and Service Bus keeps a
        # released message locked to the receiver until the lock expires: it came back after the newer messages of
        # its session (order lost) once the receiver closed, seconds later — a lane's p95 latency was 12 s. A
        # prefetch of one batch keeps such messages in the client, in order, as the Functions host does.
        prefetch = max(self._options.prefetch_count, size)
        while not self._stopping.is_set():
            try:
                async with client.get_queue_receiver(
                    spec.queue_name, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=idle, prefetch_count=prefetch
                ) as receiver:
                    session = receiver.session
                    if session.locked_until_utc is None:
                        # The SDK can report the link open between the broker's refusing attach and its detach
                        # (no session became available in time); that is "no session", not a failure.
                        continue
                    async with AutoLockRenewer(max_lock_renewal_duration=renewal) as renewer:
                        renewer.register(receiver, session)
                        while not self._stopping.is_set():
                            batch = await receive(receiver, size, idle)
                            if not batch:
                                break  # idle: let another worker take this session when it has messages again
                            received_at = time.time()
                            if spec.many:
                                batch += await self._fill(receiver, size - len(batch), len(batch))
                            await self._run(spec, receiver, batch, received_at)
            except asyncio.CancelledError:
                raise
            except OperationTimeoutError:
                continue  # no session with messages right now
            except Exception as exc:
                log.warning("session receiver %d for %s failed (%s); retrying", worker, spec.queue_name, exc)
                await asyncio.sleep(1)
