"""The Service Bus trigger on `changes` (sessions: one row's changes in order), a batch of messages per session lane
(cardinality many, up to host.json's `maxMessageBatchSize`): parse, apply together, done."""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from shared.bridge import bridge
from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord
from shared.ops.telemetry import apply_span
from shared.sync.service import Message

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


def _message(message: func.ServiceBusMessage) -> Message:
    try:
        event = ChangeEvent.model_validate_json(message.get_body())
    except ValidationError as exc:
        # Not a change this version understands: fail it, so it ends in the dead-letter queue, kept and visible.
        raise ValueError(f"message {message.message_id} is not a ChangeEvent: {exc.error_count()} problem(s)") from None
    attempt = int((message.application_properties or {}).get("attempt") or 0)
    return Message(event, message.delivery_count or 1, attempt)


@bp.service_bus_queue_trigger(
    arg_name="messages", queue_name="changes", connection="ServiceBusConnection", is_sessions_enabled=True,
    cardinality=func.Cardinality.MANY,
)  # fmt: skip
async def apply_change(messages: list[func.ServiceBusMessage]) -> None:
    if len(messages) == 1:  # alone, an unreadable message fails, and ends dead-lettered
        single = _message(messages[0])
        with apply_span(single.event):  # the trace the change was queued in, on to the target write
            await bridge().apply.apply_messages([single])
        return
    parsed: list[Message] = []
    for message in messages:
        try:
            parsed.append(_message(message))
        except ValueError as exc:
            # The batch is settled as one: failing it would dead-letter its good messages too. Kept in the error log.
            log.warning("%s", exc)
            body = message.get_body().decode("utf-8", "replace")
            await bridge().ledger.record_error(
                ErrorRecord(map="-", event_id=message.message_id or "unknown", event={"body": body[:30000]},
                            request="", message=str(exc))
            )  # fmt: skip
    if not parsed:
        return
    with apply_span(parsed[0].event):  # a batch's writes are shared: it runs in its first change's trace
        await bridge().apply.apply_messages(parsed)
