"""Service Bus queue semantics, in memory, with no I/O: the broker's functional core.

Every operation takes `now` (epoch seconds) so the rules — locks, sessions, delivery counts, dead-lettering,
scheduling, duplicate detection, TTL — are decided here and only wired to AMQP in `server.py`.
"""

from __future__ import annotations

import heapq
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import IntEnum

from local.servicebus.config import QueueConfig
from local.servicebus.message import AmqpMessage, BrokerAnnotations

DLQ_SUFFIX = "$deadletterqueue"


class BrokerError(Exception):
    """An operation refused with a Service Bus error condition (the SDK maps the condition to its exception)."""

    condition = "amqp:internal-error"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class EntityNotFound(BrokerError):
    condition = "amqp:not-found"


class NotAllowed(BrokerError):
    condition = "amqp:not-allowed"


class MessageLockLost(BrokerError):
    condition = "com.microsoft:message-lock-lost"


class SessionLockLost(BrokerError):
    condition = "com.microsoft:session-lock-lost"


class SessionCannotBeLocked(BrokerError):
    condition = "com.microsoft:session-cannot-be-locked"


class MessageNotFound(BrokerError):
    condition = "com.microsoft:message-not-found"


class State(IntEnum):
    ACTIVE = 0
    DEFERRED = 1
    SCHEDULED = 2


@dataclass(eq=False)
class Stored:
    sequence_number: int
    message: AmqpMessage
    enqueued_at: float
    expires_at: float | None
    state: State = State.ACTIVE
    scheduled_at: float | None = None
    delivery_count: int = 0  # failed deliveries so far (the AMQP header's delivery-count)
    lock_token: uuid.UUID | None = None
    locked_until: float | None = None
    owner: object | None = None  # the receiver holding the lock
    dead_letter_source: str | None = None
    dead_letter_properties: dict[str, str] | None = None

    @property
    def session_id(self) -> str | None:
        return self.message.session_id  # decoded on first use: queues without sessions never pay for it

    @property
    def locked(self) -> bool:
        return self.lock_token is not None

    def encode(self) -> bytes:
        broker = BrokerAnnotations(
            sequence_number=self.sequence_number,
            enqueued_time=self.enqueued_at,
            locked_until=self.locked_until,
            lock_token=self.lock_token,
            state=int(self.state),
            dead_letter_source=self.dead_letter_source,
        )
        return self.message.encode(
            delivery_count=self.delivery_count, broker=broker, application_properties=self.dead_letter_properties
        )


@dataclass
class SessionInfo:
    owner: object | None = None
    locked_until: float = 0.0
    state: bytes | None = None
    updated_at: float = 0.0


@dataclass
class Receiver:
    """What the engine needs to know of a receiving link."""

    name: str
    peek_lock: bool = True
    session_id: str | None = None  # the session this receiver holds, for session entities


class Entity:
    """A queue, or a queue's dead-letter sub-queue."""

    def __init__(self, config: QueueConfig, path: str, dead_letter: Entity | None = None) -> None:
        self.config = config
        self.props = config.properties
        self.path = path
        self.dead_letter = dead_letter  # None for a dead-letter queue itself
        self.messages: dict[int, Stored] = {}
        self.locks: dict[uuid.UUID, Stored] = {}
        self._ready: dict[str | None, list[int]] = {}  # heaps of sequence numbers per session (None: no session)
        self._expiry: list[tuple[float, int]] = []
        self._scheduled: list[tuple[float, int]] = []
        self._seen_ids: OrderedDict[str, float] = OrderedDict()
        self.sessions: dict[str, SessionInfo] = {}
        self._next_seq = 1

    @property
    def requires_session(self) -> bool:
        return self.props.requires_session and self.dead_letter is not None

    # --- enqueue ------------------------------------------------------------------------------------------------

    def send(self, message: AmqpMessage, now: float) -> int | None:
        """Enqueues one message; returns its sequence number, or None when dropped as a duplicate."""
        if self.requires_session and not message.session_id:
            raise NotAllowed(
                f"The SessionId was not set on a message, and it cannot be sent to the entity '{self.path}'. "
                "Entities that have session support enabled can only receive messages that have the SessionId set."
            )
        if self.props.requires_duplicate_detection and message.message_id:
            self._forget_ids(now)
            if message.message_id in self._seen_ids:
                return None
            self._seen_ids[message.message_id] = now
        ttl = self.props.default_message_ttl.total_seconds()
        if message.ttl_seconds is not None:
            ttl = min(ttl, message.ttl_seconds)
        scheduled = message.scheduled_enqueue_time
        stored = Stored(
            sequence_number=self._take_seq(),
            message=message,
            enqueued_at=now,
            expires_at=now + ttl,
        )
        if scheduled is not None and scheduled > now:
            stored.state = State.SCHEDULED
            stored.scheduled_at = scheduled
            stored.expires_at = scheduled + ttl
            heapq.heappush(self._scheduled, (scheduled, stored.sequence_number))
        self._add(stored)
        return stored.sequence_number

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _add(self, stored: Stored) -> None:
        self.messages[stored.sequence_number] = stored
        if stored.expires_at is not None:
            heapq.heappush(self._expiry, (stored.expires_at, stored.sequence_number))
        if stored.state == State.ACTIVE:
            self._make_ready(stored)

    def _make_ready(self, stored: Stored) -> None:
        # A dead-letter queue is read without sessions even when its queue requires them.
        key = stored.session_id if self.requires_session else None
        heapq.heappush(self._ready.setdefault(key, []), stored.sequence_number)

    def _forget_ids(self, now: float) -> None:
        horizon = now - self.props.duplicate_detection_window.total_seconds()
        while self._seen_ids:
            oldest_id, seen_at = next(iter(self._seen_ids.items()))
            if seen_at >= horizon:
                break
            self._seen_ids.pop(oldest_id)

    def cancel_scheduled(self, sequence_numbers: list[int]) -> None:
        for seq in sequence_numbers:
            stored = self.messages.get(seq)
            if stored is not None and stored.state == State.SCHEDULED:
                del self.messages[seq]

    # --- receive ------------------------------------------------------------------------------------------------

    def has_ready(self, session_id: str | None) -> bool:
        heap = self._ready.get(session_id)
        while heap:
            stored = self.messages.get(heap[0])
            if stored is not None and stored.state == State.ACTIVE and not stored.locked:
                return True
            heapq.heappop(heap)
        return False

    def next_message(self, receiver: Receiver, now: float) -> Stored | None:
        """Locks (peek-lock) or removes (receive-and-delete) the next message for this receiver, or None."""
        key = receiver.session_id if self.requires_session else None
        if self.requires_session and key is None:
            return None
        heap = self._ready.get(key)
        while heap:
            seq = heapq.heappop(heap)
            stored = self.messages.get(seq)
            if stored is None or stored.state != State.ACTIVE or stored.locked:
                continue
            if stored.expires_at is not None and stored.expires_at <= now:
                self._expire(stored)
                continue
            if receiver.peek_lock:
                self._lock(stored, receiver, now)
            else:
                del self.messages[seq]
            return stored
        return None

    def _lock(self, stored: Stored, receiver: Receiver, now: float) -> None:
        stored.lock_token = uuid.uuid4()
        stored.owner = receiver
        if self.requires_session and stored.session_id is not None:
            stored.locked_until = self.sessions[stored.session_id].locked_until
        else:
            stored.locked_until = now + self.props.lock_duration.total_seconds()
        self.locks[stored.lock_token] = stored

    def _unlock(self, stored: Stored) -> None:
        if stored.lock_token is not None:
            self.locks.pop(stored.lock_token, None)
        stored.lock_token = None
        stored.locked_until = None
        stored.owner = None

    # --- settle -------------------------------------------------------------------------------------------------

    def _locked(self, token: uuid.UUID, now: float, receiver: Receiver | None = None) -> Stored:
        stored = self.locks.get(token)
        if stored is not None and self.requires_session and stored.session_id is not None:
            session = self.sessions.get(stored.session_id)
            if (
                session is None
                or session.locked_until <= now
                or (receiver is not None and session.owner is not receiver)
            ):
                raise SessionLockLost(
                    f"The session lock has expired on the MessageSession. Accept a new MessageSession. "
                    f"TrackingId:{uuid.uuid4()}"
                )
            return stored
        if stored is None or stored.locked_until is None or stored.locked_until <= now:
            raise MessageLockLost(
                "The lock supplied is invalid. Either the lock expired, or the message has already been removed "
                f"from the queue. Reference:{token}, TrackingId:{uuid.uuid4()}, SystemTracker:{self.path}"
            )
        return stored

    def complete(self, token: uuid.UUID, now: float, receiver: Receiver | None = None) -> None:
        stored = self._locked(token, now, receiver)
        self._unlock(stored)
        self.messages.pop(stored.sequence_number, None)

    def abandon(self, token: uuid.UUID, now: float, receiver: Receiver | None = None) -> None:
        stored = self._locked(token, now, receiver)
        self._unlock(stored)
        self._failed_delivery(stored)

    def release(self, token: uuid.UUID, now: float) -> None:
        """Unlocks without counting a delivery (AMQP `released`: the client never handed it to the application)."""
        stored = self.locks.get(token)
        if stored is None:
            return
        self._unlock(stored)
        if stored.state == State.ACTIVE:
            self._make_ready(stored)

    def defer(self, token: uuid.UUID, now: float, receiver: Receiver | None = None) -> None:
        stored = self._locked(token, now, receiver)
        self._unlock(stored)
        stored.state = State.DEFERRED

    def dead_letter_locked(
        self,
        token: uuid.UUID,
        reason: str | None,
        description: str | None,
        now: float,
        receiver: Receiver | None = None,
    ) -> None:
        stored = self._locked(token, now, receiver)
        self._unlock(stored)
        self.dead_letter_message(stored, reason, description)

    def renew_lock(self, token: uuid.UUID, now: float) -> float:
        stored = self._locked(token, now)
        if self.requires_session:
            raise NotAllowed("renew lock is not supported on session messages: renew the session lock instead")
        stored.locked_until = now + self.props.lock_duration.total_seconds()
        return stored.locked_until

    def _failed_delivery(self, stored: Stored) -> None:
        stored.delivery_count += 1
        if stored.delivery_count >= self.props.max_delivery_count:
            self.dead_letter_message(
                stored,
                "MaxDeliveryCountExceeded",
                f"Message could not be consumed after {self.props.max_delivery_count} delivery attempts.",
            )
        elif stored.state == State.ACTIVE:
            self._make_ready(stored)

    def dead_letter_message(self, stored: Stored, reason: str | None, description: str | None) -> None:
        self.messages.pop(stored.sequence_number, None)
        if self.dead_letter is None:
            return  # a dead-letter queue's own messages are only ever completed
        props: dict[str, str] = {}
        if reason is not None:
            props["DeadLetterReason"] = reason
        if description is not None:
            props["DeadLetterErrorDescription"] = description
        moved = Stored(
            sequence_number=stored.sequence_number,
            message=stored.message,
            enqueued_at=stored.enqueued_at,
            expires_at=None,  # dead-lettered messages do not expire
            delivery_count=stored.delivery_count,
            dead_letter_source=self.path,
            dead_letter_properties=props,
        )
        self.dead_letter._add(moved)

    def _expire(self, stored: Stored) -> None:
        if self.props.dead_lettering_on_message_expiration and self.dead_letter is not None:
            self.dead_letter_message(stored, "TTLExpiredException", "The message expired and was dead lettered.")
        else:
            self.messages.pop(stored.sequence_number, None)

    # --- deferred, peek -----------------------------------------------------------------------------------------

    def receive_deferred(
        self, sequence_numbers: list[int], receiver: Receiver, now: float, session_id: str | None = None
    ) -> list[Stored]:
        found = []
        for seq in sequence_numbers:
            stored = self.messages.get(seq)
            if (
                stored is None
                or stored.state != State.DEFERRED
                or (session_id is not None and stored.session_id != session_id)
            ):
                raise MessageNotFound(f"Failed to retrieve the deferred message with sequence number {seq}.")
            found.append(stored)
        for stored in found:
            if receiver.peek_lock:
                self._lock(stored, receiver, now)
            else:
                del self.messages[stored.sequence_number]
        return found

    def peek(self, from_sequence: int, count: int, session_id: str | None = None) -> list[Stored]:
        chosen = []
        for seq in sorted(s for s in self.messages if s >= from_sequence):
            stored = self.messages[seq]
            if session_id is not None and stored.session_id != session_id:
                continue
            chosen.append(stored)
            if len(chosen) >= count:
                break
        return chosen

    # --- sessions -----------------------------------------------------------------------------------------------

    def accept_session(self, receiver: Receiver, session_id: str | None, now: float) -> str | None:
        """Locks a named session (or raises), or the next available one with messages (None if there is none)."""
        lock_seconds = self.props.lock_duration.total_seconds()
        if session_id is not None:
            info = self.sessions.setdefault(session_id, SessionInfo())
            if info.owner is not None and info.owner is not receiver and info.locked_until > now:
                raise SessionCannotBeLocked(
                    f"The requested session '{session_id}' cannot be accepted. It may be locked by another receiver."
                )
            info.owner, info.locked_until = receiver, now + lock_seconds
            receiver.session_id = session_id
            return session_id
        candidates = []
        for sid, heap in list(self._ready.items()):
            if sid is None:
                continue
            if not self.has_ready(sid):
                del self._ready[sid]  # keeps this scan as short as the sessions with messages
                continue
            holder = self.sessions.get(sid)
            if holder is not None and holder.owner is not None and holder.locked_until > now:
                continue
            candidates.append((heap[0], sid))
        if not candidates:
            return None
        _, chosen = min(candidates)
        info = self.sessions.setdefault(chosen, SessionInfo())
        info.owner, info.locked_until = receiver, now + lock_seconds
        receiver.session_id = chosen
        return chosen

    def release_receiver(self, receiver: Receiver, now: float) -> None:
        """A receiving link went away. On a session queue its session lock ends and the session's messages are
        available again at once. Elsewhere the messages it was delivered stay locked until their locks expire, and
        that delivery counts (Service Bus: "Message transfers, locks, and settlement", PeekLock: a message whose lock
        expires becomes available again with its delivery count incremented) — also when the SDK releases its
        prefetched messages as it closes."""
        if not self.requires_session:
            return
        for stored in [s for s in self.locks.values() if s.owner is receiver]:
            self._unlock(stored)
            if stored.state == State.ACTIVE:
                self._make_ready(stored)
        if receiver.session_id is not None:
            info = self.sessions.get(receiver.session_id)
            if info is not None and info.owner is receiver:
                info.owner, info.locked_until = None, 0.0

    def _session_for(self, session_id: str, receiver: Receiver | None, now: float) -> SessionInfo:
        info = self.sessions.get(session_id)
        if (
            info is None
            or info.owner is None
            or info.locked_until <= now
            or (receiver is not None and info.owner is not receiver)
        ):
            raise SessionLockLost(f"The session lock has expired on the MessageSession '{session_id}'.")
        return info

    def renew_session_lock(self, session_id: str, receiver: Receiver | None, now: float) -> float:
        info = self._session_for(session_id, receiver, now)
        info.locked_until = now + self.props.lock_duration.total_seconds()
        for stored in self.locks.values():
            if stored.session_id == session_id:
                stored.locked_until = info.locked_until
        return info.locked_until

    def get_session_state(self, session_id: str, receiver: Receiver | None, now: float) -> bytes | None:
        return self._session_for(session_id, receiver, now).state

    def set_session_state(self, session_id: str, state: bytes | None, receiver: Receiver | None, now: float) -> None:
        info = self._session_for(session_id, receiver, now)
        info.state, info.updated_at = state, now

    def session_ids(self, state_updated_after: float | None = None) -> list[str]:
        """Sessions with messages or state; with a date, those whose state was set after it."""
        if state_updated_after is not None:
            return sorted(sid for sid, info in self.sessions.items() if info.updated_at > state_updated_after)
        with_messages = {s.session_id for s in self.messages.values() if s.session_id is not None}
        with_state = {sid for sid, info in self.sessions.items() if info.state is not None}
        return sorted(with_messages | with_state)

    # --- time ---------------------------------------------------------------------------------------------------

    def tick(self, now: float) -> bool:
        """Applies what time decides: lock expiry, scheduled activation, TTL. True when something became ready."""
        changed = False
        for stored in [s for s in self.locks.values() if s.locked_until is not None and s.locked_until <= now]:
            self._unlock(stored)
            self._failed_delivery(stored)
            changed = True
        for info in self.sessions.values():
            if info.owner is not None and info.locked_until <= now:
                info.owner = None
                changed = True
        while self._scheduled and self._scheduled[0][0] <= now:
            _, seq = heapq.heappop(self._scheduled)
            due = self.messages.get(seq)
            if due is not None and due.state == State.SCHEDULED:
                due.state = State.ACTIVE
                self._make_ready(due)
                changed = True
        while self._expiry and self._expiry[0][0] <= now:
            _, seq = heapq.heappop(self._expiry)
            old = self.messages.get(seq)
            if old is not None and not old.locked and old.state == State.ACTIVE:
                if old.expires_at is not None and old.expires_at <= now:
                    self._expire(old)
                    changed = True
        return changed


@dataclass
class Namespace:
    """Every queue of the broker, by lower-cased path; a queue's DLQ is `<queue>/$deadletterqueue`."""

    entities: dict[str, Entity] = field(default_factory=dict)

    @classmethod
    def from_queues(cls, queues: list[QueueConfig]) -> Namespace:
        ns = cls()
        for q in queues:
            path = q.name.lower()
            dlq = Entity(q, f"{path}/{DLQ_SUFFIX}")
            ns.entities[path] = Entity(q, path, dead_letter=dlq)
            ns.entities[dlq.path] = dlq
        return ns

    def entity(self, path: str) -> Entity:
        entity = self.entities.get(path.strip("/").lower())
        if entity is None:
            raise EntityNotFound(
                f"The messaging entity '{path}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions."
            )
        return entity

    def tick(self, now: float) -> list[Entity]:
        return [e for e in self.entities.values() if e.tick(now)]
