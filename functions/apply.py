"""The Service Bus trigger on `changes` (sessions: one row's changes in order): parse, apply, done."""

from __future__ import annotations

import logging

import azure.functions as func
from pydantic import ValidationError

from shared.events.model import ChangeEvent
from shared.ops.telemetry import apply_span
from shared.sync.wiring import apply_message

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(
    arg_name="message", queue_name="changes", connection="ServiceBusConnection", is_sessions_enabled=True
)
async def apply_change(message: func.ServiceBusMessage) -> None:
    try:
        event = ChangeEvent.model_validate_json(message.get_body())
    except ValidationError as exc:
        # Not a change this version understands: fail it, so it ends in the dead-letter queue, kept and visible.
        raise ValueError(f"message {message.message_id} is not a ChangeEvent: {exc.error_count()} problem(s)") from None
    attempt = int((message.application_properties or {}).get("attempt") or 0)
    with apply_span(event):  # the trace the change was queued in, on to the target write
        await apply_message(event, message.delivery_count or 1, attempt)
