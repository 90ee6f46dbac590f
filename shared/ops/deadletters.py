"""The `changes` queue's dead-letter queue: browse (peek, nothing is taken) and resubmit one message (a copy goes
back on `changes` under a new message id — duplicate detection would drop the original's — and the dead letter is
completed only once the copy is queued)."""

from __future__ import annotations

import json
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from shared.events.model import ChangeEvent
from shared.ops.ids import replay_event_id

MAX_BROWSE = 100


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

    async def browse(self, limit: int = 50, from_id: int | None = None) -> list[dict[str, Any]]:
        limit = max(1, min(limit, MAX_BROWSE))
        async with self._client.get_queue_receiver(self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as rx:
            kw: dict[str, Any] = {"sequence_number": from_id} if from_id else {}
            return [dead_letter_json(m) for m in await rx.peek_messages(max_message_count=limit, **kw)]

    async def resubmit(self, sequence_number: int, resubmission: str) -> dict[str, Any]:
        async with self._client.get_queue_receiver(
            self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2
        ) as rx:
            others: list[ServiceBusReceivedMessage] = []  # kept locked while searching, then given back
            found: ServiceBusReceivedMessage | None = None
            try:
                while found is None and len(others) < 10_000:
                    batch = await rx.receive_messages(max_message_count=MAX_BROWSE, max_wait_time=2)
                    if not batch:
                        break
                    found = next((m for m in batch if m.sequence_number == sequence_number), None)
                    others += [m for m in batch if m is not found]
            finally:
                for other in others:
                    await rx.abandon_message(other)
            if found is None:
                raise DeadLetterNotFound(f"no dead-lettered message {sequence_number}")
            copy = ServiceBusMessage(
                _resubmitted_body(_body(found), resubmission).encode(),
                message_id=f"{found.message_id}:resubmitted:{resubmission}",
                session_id=found.session_id,
                content_type=found.content_type,
                subject=found.subject,
                correlation_id=found.correlation_id,
                application_properties={_text(k): _text(v) for k, v in (found.application_properties or {}).items()},
            )
            async with self._client.get_queue_sender(self._queue) as sender:
                await sender.send_messages(copy)
            await rx.complete_message(found)
            return dead_letter_json(found) | {"resubmitted_as": copy.message_id}
