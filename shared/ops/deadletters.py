"""The `changes` queue's dead-letter queue: browse (peek, nothing is taken) and resubmit one message (a copy goes
back on `changes` under a new message id — duplicate detection would drop the original's — and the dead letter is
completed only once the copy is queued)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from shared.events.model import ChangeEvent
from shared.ops.ids import original_event_id, replay_event_id

MAX_BROWSE = 100
MAX_SEARCH = 10_000
Resolved = Callable[[dict[str, Any]], Awaitable[bool]]


class DeadLetterNotFound(LookupError):
    pass


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _body(message: ServiceBusReceivedMessage) -> str:
    return b"".join(bytes(part) for part in message.body).decode(errors="replace")


def dead_letter_json(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    body = _body(message)
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    return {
        "id": str(message.sequence_number),
        "message_id": message.message_id,
        "session_id": message.session_id,
        "enqueued_at": message.enqueued_time_utc.isoformat() if message.enqueued_time_utc else None,
        "reason": message.dead_letter_reason,
        "description": message.dead_letter_error_description,
        "delivery_count": message.delivery_count,
        "subject": message.subject,
        "event": parsed if isinstance(parsed, dict) else None,
        "body": None if isinstance(parsed, dict) else body[:4000],
    }


def _resubmitted_body(body: str, resubmission: str) -> str:
    """A change goes back under a replay's event id, so that its outcome closes its error entry as a replay does;
    anything else is resubmitted as it is."""
    try:
        event = ChangeEvent.model_validate_json(body)
    except ValueError:
        return body
    return event.model_copy(update={"event_id": replay_event_id(event.event_id, resubmission)}).model_dump_json()


class DeadLetters:
    def __init__(self, client: ServiceBusClient, queue: str) -> None:
        self._client = client
        self._queue = queue

    async def browse(
        self, limit: int = 50, from_id: int | None = None, resolved: Resolved | None = None
    ) -> list[dict[str, Any]]:
        """Peeked, nothing taken. A change `resolved` says was applied since (its error resolved by a replay that ran
        before the original reached the dead letters) is settled here instead of shown."""
        limit = max(1, min(limit, MAX_BROWSE))
        async with self._client.get_queue_receiver(self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as rx:
            kw: dict[str, Any] = {"sequence_number": from_id} if from_id else {}
            letters = [dead_letter_json(m) for m in await rx.peek_messages(max_message_count=limit, **kw)]
        if resolved is None:
            return letters
        shown, settled = [], set()
        for letter in letters:
            event = letter["event"]
            if event and isinstance(event.get("event_id"), str) and await resolved(event):
                settled.add(event["event_id"])
            else:
                shown.append(letter)
        if settled:
            await self.settle_events(settled)  # one pass over the dead letters for all of them
        return shown

    async def _take(
        self, rx: Any, wanted: Callable[[ServiceBusReceivedMessage], bool], first_only: bool
    ) -> list[ServiceBusReceivedMessage]:
        """Receive (locked) the dead letters `wanted` picks; every other one received on the way is given back.

        A message is reached only by receiving those before it. Peeked first, so that exactly as many are asked for
        as it takes: a receiver left with credit would get the ones it gives back delivered to itself again, and
        they would stay locked, out of everyone's reach, until their lock expires."""
        peeked: list[ServiceBusReceivedMessage] = []
        while len(peeked) < MAX_SEARCH:  # paged: the service answers a peek with fewer than asked for
            start: dict[str, Any] = {"sequence_number": (peeked[-1].sequence_number or 0) + 1} if peeked else {}
            page = await rx.peek_messages(max_message_count=MAX_BROWSE, **start)
            if not page:
                break
            peeked += page
        positions = [i for i, m in enumerate(peeked) if wanted(m)]
        if not positions:
            return []
        need = (positions[0] if first_only else positions[-1]) + 1
        others: list[ServiceBusReceivedMessage] = []
        found: list[ServiceBusReceivedMessage] = []
        try:
            while len(found) + len(others) < need and not (first_only and found):
                left = need - len(found) - len(others)
                batch = await rx.receive_messages(max_message_count=min(left, MAX_BROWSE), max_wait_time=2)
                if not batch:
                    break
                for m in batch:
                    (found if wanted(m) and not (first_only and found) else others).append(m)
        finally:
            for other in others:
                await rx.abandon_message(other)
        return found

    def _receiver(self) -> Any:
        return self._client.get_queue_receiver(self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2)

    async def resubmit(self, sequence_number: int, resubmission: str) -> dict[str, Any]:
        async with self._receiver() as rx:
            taken = await self._take(rx, lambda m: m.sequence_number == sequence_number, first_only=True)
            if not taken:
                raise DeadLetterNotFound(f"no dead-lettered message {sequence_number}")
            found = taken[0]
            copy = ServiceBusMessage(
                _resubmitted_body(_body(found), resubmission).encode(),
                message_id=f"{found.message_id}:resubmitted:{resubmission}",
                session_id=found.session_id,
                content_type=found.content_type,
                subject=found.subject,
                correlation_id=found.correlation_id,
                application_properties={_text(k): _text(v) for k, v in (found.application_properties or {}).items()},
            )
            try:
                async with self._client.get_queue_sender(self._queue) as sender:
                    await sender.send_messages(copy)
            except BaseException:
                await rx.abandon_message(found)  # not queued again: the dead letter stays
                raise
            await rx.complete_message(found)  # the copy is on the queue: the dead letter goes
            return dead_letter_json(found) | {"resubmitted_as": copy.message_id}

    async def settle_event(self, event_id: str) -> int:
        return await self.settle_events({event_id})

    async def settle_events(self, event_ids: set[str]) -> int:
        """Complete the dead letters of changes that were applied since (a replay or a resubmission brought them
        over): the dead-letter queue shows only what still needs a person. Returns how many were settled."""
        originals = {original_event_id(e) for e in event_ids}
        async with self._receiver() as rx:
            taken = await self._take(rx, lambda m: _event_id(m) in originals, first_only=False)
            for message in taken:
                await rx.complete_message(message)
            return len(taken)


def _event_id(message: ServiceBusReceivedMessage) -> str | None:
    """The original event id of the change a message carries (None: not a change)."""
    try:
        return original_event_id(ChangeEvent.model_validate_json(_body(message)).event_id)
    except ValueError:
        return None
