"""The `$management` operations of a queue (request-response, "AMQP 1.0 in Azure Service Bus: request-response
operations"): a request body in, a status and a response body out, over the engine; no AMQP links here."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from proton import UNDESCRIBED, Array, Data, timestamp

from local.servicebus.engine import BrokerError, Entity, NotAllowed, Receiver, SessionCannotBeLocked
from local.servicebus.message import AmqpMessage

UPDATE_DISPOSITION = "com.microsoft:update-disposition"


def operate(
    entity: Entity, operation: str, body: dict[str, Any], receiver: Receiver | None, now: float
) -> tuple[int, dict[str, Any] | None]:
    """Runs one request on `entity` for `receiver` (the link named by `associated-link-name`, if any)."""
    session_id = text(body.get("session-id"))
    if operation == "com.microsoft:renew-lock":
        tokens = [as_uuid(t) for t in body.get("lock-tokens", [])]
        expirations = [timestamp(int(entity.renew_lock(t, now) * 1000)) for t in tokens]
        return 200, {"expirations": _array(Data.TIMESTAMP, *expirations)}
    if operation == "com.microsoft:peek-message":
        found = entity.peek(int(body.get("from-sequence-number", 0)), int(body.get("message-count", 1)), session_id)
        if not found:
            return 204, None
        return 200, {"messages": [{"message": s.encode()} for s in found]}
    if operation == "com.microsoft:schedule-message":
        seqs = []
        for item in body.get("messages", []):
            item = {str(k): v for k, v in item.items()}
            seq = entity.send(AmqpMessage.decode(bytes(item["message"])), now)
            seqs.append(int(seq if seq is not None else 0))
        return 200, {"sequence-numbers": _array(Data.LONG, *seqs)}
    if operation == "com.microsoft:cancel-scheduled-message":
        entity.cancel_scheduled([int(s) for s in body.get("sequence-numbers", [])])
        return 200, {}
    if operation == "com.microsoft:receive-by-sequence-number":
        mode = int(body.get("receiver-settle-mode", 1))
        actor = receiver or Receiver(name="management", peek_lock=mode != 0)
        found = entity.receive_deferred([int(s) for s in body.get("sequence-numbers", [])], actor, now, session_id)
        messages = [
            {"lock-token": s.lock_token, "message": s.encode()} if s.lock_token else {"message": s.encode()}
            for s in found
        ]
        return 200, {"messages": messages}
    if operation == UPDATE_DISPOSITION:
        return 200, _update_disposition(entity, body, now)
    if operation == "com.microsoft:renew-session-lock":
        if session_id is None:
            raise NotAllowed("session-id is required")
        return 200, {"expiration": timestamp(int(entity.renew_session_lock(session_id, receiver, now) * 1000))}
    if operation == "com.microsoft:get-session-state":
        if session_id is None:
            raise NotAllowed("session-id is required")
        return 200, {"session-state": entity.get_session_state(session_id, receiver, now)}
    if operation == "com.microsoft:set-session-state":
        if session_id is None:
            raise NotAllowed("session-id is required")
        state = body.get("session-state")
        entity.set_session_state(session_id, bytes(state) if state is not None else None, receiver, now)
        return 200, {}
    if operation == "com.microsoft:get-message-sessions":
        skip, top = int(body.get("skip", 0)), int(body.get("top", 100))
        ids = entity.session_ids(_updated_after(body.get("last-updated-time")))[skip : skip + top]
        if not ids:
            return 204, None
        return 200, {"skip": skip + len(ids), "sessions-ids": _array(Data.STRING, *ids)}
    raise NotAllowed(f"operation {operation!r} is not supported by the local broker")


def settled_tokens(body: dict[str, Any]) -> list[uuid.UUID]:
    """The lock tokens an update-disposition request settles (their link deliveries are settled with them)."""
    return [as_uuid(t) for t in body.get("lock-tokens", [])]


def _update_disposition(entity: Entity, body: dict[str, Any], now: float) -> dict[str, Any]:
    status = str(body.get("disposition-status", ""))
    for token in settled_tokens(body):
        if status == "completed":
            entity.complete(token, now)
        elif status == "abandoned":
            entity.abandon(token, now)
        elif status == "defered":
            entity.defer(token, now)
        elif status == "suspended":
            entity.dead_letter_locked(
                token, text(body.get("deadletter-reason")), text(body.get("deadletter-description")), now
            )
        else:
            raise NotAllowed(f"unknown disposition-status {status!r}")
    return {}


def _array(kind: Any, *values: Any) -> Array:
    """An AMQP array, which the SDK expects for lock tokens, expirations and sequence numbers."""
    return Array(UNDESCRIBED, kind, *values)  # type: ignore[arg-type]


def status_for(exc: BrokerError) -> int:
    if exc.condition in ("amqp:not-found", "com.microsoft:message-not-found"):
        return 404
    if exc.condition in ("com.microsoft:message-lock-lost", "com.microsoft:session-lock-lost"):
        return 410
    if isinstance(exc, SessionCannotBeLocked):
        return 409
    return 400


# DateTime.MaxValue as the SDKs send it (ms since the epoch): "no date", list every session with messages or state.
# Any other `last-updated-time` lists the sessions whose state was set after it ("AMQP 1.0 in Azure Service Bus:
# request-response operations", Get message sessions).
_NO_DATE_MS = 253402300800000


def _updated_after(value: object) -> float | None:
    """`last-updated-time` (an AMQP timestamp, ms) as epoch seconds, or None for Service Bus's "no date"."""
    if isinstance(value, datetime):
        value = int(value.timestamp() * 1000)
    if not isinstance(value, int) or value >= _NO_DATE_MS:
        return None
    return value / 1000


def text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def as_uuid(value: object) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes | memoryview):
        return uuid.UUID(bytes=bytes(value))
    return uuid.UUID(str(value))
