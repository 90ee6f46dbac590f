"""The AMQP 1.0 side of the local broker: Proton events in, engine operations, dispositions and replies out.

The wire behaviour follows ../shared/reference/servicebus-amqp.md (what the azure-servicebus SDK sends and expects).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from cproton import ffi as _ffi
from cproton import lib as _pn
from proton import (
    Condition,
    Connection,
    Delivery,
    Described,
    Disposition,
    Endpoint,
    Handler,
    Link,
    Message,
    Session,
    Terminus,
    Transport,
    symbol,
    uint,
)

from local.servicebus import management
from local.servicebus.auth import SasValidator
from local.servicebus.engine import (
    BrokerError,
    Entity,
    Namespace,
    NotAllowed,
    Receiver,
    Stored,
)
from local.servicebus.message import AmqpMessage, MessageFormatError

log = logging.getLogger("local.servicebus")

SESSION_FILTER = symbol("com.microsoft:session-filter")
TIMEOUT = symbol("com.microsoft:timeout")
LOCKED_UNTIL_UTC = symbol("com.microsoft:locked-until-utc")
DOTNET_EPOCH_TICKS = 621355968000000000
CREDIT = 1000
MAX_MESSAGE_SIZE = 1024 * 1024
TICK_SECONDS = 0.05


class EndpointEvent(Protocol):
    """What the handler reads of a Proton event: the endpoints it concerns (the loop wraps each one only if read)."""

    @property
    def connection(self) -> Connection | None: ...

    @property
    def session(self) -> Session | None: ...

    @property
    def link(self) -> Link | None: ...

    @property
    def delivery(self) -> Delivery | None: ...

    @property
    def transport(self) -> Transport | None: ...


def _ticks(epoch_seconds: float) -> int:
    return DOTNET_EPOCH_TICKS + int(epoch_seconds * 10_000_000)


def _path_of(address: str | None) -> str:
    """`amqps://host:5672/q1/$DeadLetterQueue` → `q1/$deadletterqueue`; `q1/$management` stays relative."""
    if not address:
        return ""
    parsed = urllib.parse.urlparse(address)
    path = parsed.path if parsed.scheme else address
    return path.strip("/").lower()


def _error_info(description: str) -> dict[Any, Any]:
    # Proton drops trailing null fields: without an info map the SDK waits for a field that never comes.
    return {symbol("com.microsoft:tracking-id"): str(uuid.uuid4()), symbol("description"): description}


@dataclass(eq=False)
class ReceiverLink:
    """One receiving client link on an entity, with the deliveries it has not settled yet."""

    link: Link
    entity: Entity
    receiver: Receiver
    unsettled: dict[bytes, uuid.UUID] = field(default_factory=dict)


@dataclass(eq=False)
class SessionWaiter:
    link: Link
    entity: Entity
    receiver: Receiver
    deadline: float


@dataclass(eq=False)
class ManagementReplies:
    """The management reply link of one AMQP session and entity, with replies waiting for credit."""

    link: Link
    outbox: deque[bytes] = field(default_factory=deque)


class BrokerHandler(Handler):
    def __init__(
        self, namespace: Namespace, host: str, port: int, sas: SasValidator, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self.namespace = namespace
        self.host, self.port = host, port
        self.sas = sas
        self.now = clock
        self.receivers: dict[Link, ReceiverLink] = {}
        self.by_entity: dict[str, list[ReceiverLink]] = {}
        self.waiters: list[SessionWaiter] = []
        self.cbs_replies: dict[Session, Link] = {}
        self.mgmt_replies: dict[tuple[Session, str], ManagementReplies] = {}
        self.reply_links: set[str] = set()  # names of management reply links, to skip the scan on other flows
        self.incoming: dict[Link, Entity] = {}  # client sender links on entities
        self.roles: dict[Link, str] = {}  # "cbs" | "mgmt:<path>" for our receiving ends of request links
        self.stopping = False

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """What time decides (lock and session expiry, scheduled messages, TTL, session waiters), every tick."""
        now = self.now()
        for entity in self.namespace.tick(now):
            self.pump(entity)
        self._serve_waiters(now)

    def drop_connection(self, connection: Connection) -> None:
        self._drop_links(lambda link: link.connection == connection)

    def on_connection_remote_open(self, event: EndpointEvent) -> None:
        _need(event.connection).open()  # SASL (ANONYMOUS) is set up by the loop, before the first byte

    def on_connection_remote_close(self, event: EndpointEvent) -> None:
        connection = _need(event.connection)
        self._drop_links(lambda link: link.connection == connection)
        connection.close()

    def on_transport_closed(self, event: EndpointEvent) -> None:
        connection = event.connection
        if connection is not None:
            self._drop_links(lambda link: link.connection == connection)

    def on_transport_error(self, event: EndpointEvent) -> None:
        cond = _need(event.transport).condition
        if cond is not None and cond.name != "amqp:connection:framing-error":
            log.warning("transport error: %s %s", cond.name, cond.description)

    def on_session_remote_open(self, event: EndpointEvent) -> None:
        _need(event.session).open()

    def on_session_remote_close(self, event: EndpointEvent) -> None:
        session = _need(event.session)
        self._drop_links(lambda link: link.session == session)
        session.close()

    def on_link_remote_close(self, event: EndpointEvent) -> None:
        closed = _need(event.link)
        self._drop_links(lambda link: link == closed)
        if not closed.state & Endpoint.LOCAL_CLOSED:
            closed.close()

    def on_link_remote_detach(self, event: EndpointEvent) -> None:
        self.on_link_remote_close(event)

    def _drop_links(self, matches: Callable[[Link], bool]) -> None:
        now = self.now()
        for link in [lnk for lnk in self.receivers if matches(lnk)]:
            rl = self.receivers.pop(link)
            self.by_entity.get(rl.entity.path, []).remove(rl) if rl in self.by_entity.get(rl.entity.path, []) else None
            rl.entity.release_receiver(rl.receiver, now)
            self.pump(rl.entity)
        self.waiters = [w for w in self.waiters if not matches(w.link)]
        for session in [s for s, link in self.cbs_replies.items() if matches(link)]:
            del self.cbs_replies[session]
        for key in [k for k, r in self.mgmt_replies.items() if matches(r.link)]:
            del self.mgmt_replies[key]
        for link in [lnk for lnk in self.incoming if matches(lnk)]:
            del self.incoming[link]
        for link in [lnk for lnk in self.roles if matches(lnk)]:
            del self.roles[link]

    # --- attach -------------------------------------------------------------------------------------------------

    def on_link_remote_open(self, event: EndpointEvent) -> None:
        link = _need(event.link)
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        try:
            if link.is_receiver:
                self._attach_incoming(link)
            else:
                self._attach_outgoing(link)
        except BrokerError as exc:
            self._refuse(link, exc.condition, exc.description)

    def _refuse(self, link: Link, condition: str, description: str) -> None:
        log.info("link %s refused: %s", link.name, condition)
        # A refusing attach carries a null terminus on our side (AMQP 1.0 §2.6.3): the SDK treats only a null
        # source (for its receivers) or target (for its senders) as a refusal, and otherwise believes it attached.
        if link.is_sender:
            link.source.type = Terminus.UNSPECIFIED
        else:
            link.target.type = Terminus.UNSPECIFIED
        # The SDK's attach callback reads the attach's properties before it sees the detach: never leave them null.
        link.properties = {symbol("com.microsoft:tracking-id"): str(uuid.uuid4())}
        link.open()
        link.condition = Condition(condition, description, _error_info(description))
        link.close()

    def _attach_incoming(self, link: Link) -> None:
        address = link.remote_target.address
        path = _path_of(address)
        if path == "$cbs":
            self.roles[link] = "cbs"
        elif path.endswith("/$management"):
            self.namespace.entity(path[: -len("/$management")])
            self.roles[link] = f"mgmt:{path[: -len('/$management')]}"
        else:
            entity = self.namespace.entity(path)
            if entity.dead_letter is None:
                raise NotAllowed("messages cannot be sent to a dead-letter queue")
            self.incoming[link] = entity
            link.max_message_size = MAX_MESSAGE_SIZE
            link.properties = {symbol("com.microsoft:max-message-batch-size"): uint(MAX_MESSAGE_SIZE)}
        link.open()
        link.flow(CREDIT)

    def _attach_outgoing(self, link: Link) -> None:
        address = link.remote_source.address
        path = _path_of(address)
        if path == "$cbs":
            self.cbs_replies[link.session] = link
            link.open()
            return
        if path.endswith("/$management"):
            entity_path = path[: -len("/$management")]
            self.namespace.entity(entity_path)
            self.mgmt_replies[(link.session, entity_path)] = ManagementReplies(link)
            self.reply_links.add(link.name)
            link.open()
            return
        entity = self.namespace.entity(path)
        peek_lock = link.remote_snd_settle_mode != Link.SND_SETTLED
        receiver = Receiver(name=link.name, peek_lock=peek_lock)
        if entity.requires_session:
            self._attach_session_receiver(link, entity, receiver)
            return
        self._open_receiver(link, entity, receiver)

    def _attach_session_receiver(self, link: Link, entity: Entity, receiver: Receiver) -> None:
        filters = _terminus_filter(link.remote_source)
        if SESSION_FILTER not in filters and "com.microsoft:session-filter" not in filters:
            raise NotAllowed(f"'{entity.path}' requires sessions: receive with a session receiver")
        requested = filters.get(SESSION_FILTER, filters.get("com.microsoft:session-filter"))
        if isinstance(requested, Described):
            requested = requested.value
        requested_sid = str(requested) if requested is not None else None
        now = self.now()
        sid = entity.accept_session(receiver, requested_sid, now)
        if sid is None:
            props = link.remote_properties or {}
            wait_ms = props.get(TIMEOUT, props.get("com.microsoft:timeout"))
            deadline = now + (int(wait_ms) / 1000 if wait_ms is not None else 60.0)
            self.waiters.append(SessionWaiter(link, entity, receiver, deadline))
            return
        self._open_session_receiver(link, entity, receiver, sid)

    def _open_session_receiver(self, link: Link, entity: Entity, receiver: Receiver, sid: str) -> None:
        link.source.filter.clear()
        link.source.filter.put_dict({SESSION_FILTER: sid})
        link.properties = {LOCKED_UNTIL_UTC: int(_ticks(entity.sessions[sid].locked_until))}
        log.info("session %r of %s locked by %s", sid, entity.path, link.name)
        self._open_receiver(link, entity, receiver)

    def _open_receiver(self, link: Link, entity: Entity, receiver: Receiver) -> None:
        link.open()
        rl = ReceiverLink(link, entity, receiver)
        self.receivers[link] = rl
        self.by_entity.setdefault(entity.path, []).append(rl)
        self.send_ready(rl)

    def _serve_waiters(self, now: float) -> None:
        still: list[SessionWaiter] = []
        for w in self.waiters:
            try:
                sid = w.entity.accept_session(w.receiver, None, now)
            except BrokerError as exc:
                self._refuse(w.link, exc.condition, exc.description)
                continue
            if sid is not None:
                self._open_session_receiver(w.link, w.entity, w.receiver, sid)
            elif w.deadline <= now:
                self._refuse(w.link, "com.microsoft:timeout", "No session available to accept within the timeout.")
            else:
                still.append(w)
        self.waiters = still

    # --- deliveries -----------------------------------------------------------------------------------------------

    def on_link_flow(self, event: EndpointEvent) -> None:
        link = _need(event.link)
        if link.is_sender:
            rl = self.receivers.get(link)
            if rl is not None:
                self.send_ready(rl)
            elif link.name in self.reply_links:
                for replies in self.mgmt_replies.values():
                    if replies.link == link:
                        self._flush(replies)

    def on_delivery(self, event: EndpointEvent) -> None:
        delivery = _need(event.delivery)
        link = _need(event.link)
        if link.is_receiver:
            if delivery.partial:
                return
            payload = bytes(link.recv(delivery.pending) or b"")
            link.advance()
            self._on_incoming(link, delivery, payload)
            if link.credit < CREDIT // 2:
                link.flow(CREDIT - link.credit)
        elif delivery.updated and not delivery.settled:
            self._on_settlement(link, delivery)

    def _on_incoming(self, link: Link, delivery: Delivery, payload: bytes) -> None:
        role = self.roles.get(link)
        if role == "cbs":
            self._put_token(link, delivery, payload)
        elif role is not None and role.startswith("mgmt:"):
            self._management(link, delivery, payload, role[len("mgmt:") :])
        elif link in self.incoming:
            self._enqueue(self.incoming[link], delivery, payload)
        else:
            delivery.settle()

    def _enqueue(self, entity: Entity, delivery: Delivery, payload: bytes) -> None:
        now = self.now()
        try:
            message = AmqpMessage.decode(payload)
            members = message.batch_members() or [message]
            if entity.requires_session and any(not m.session_id for m in members):
                entity.send(next(m for m in members if not m.session_id), now)  # raises NotAllowed
            for member in members:
                entity.send(member, now)
        except MessageFormatError as exc:
            self._reject(delivery, "amqp:decode-error", str(exc))
            return
        except BrokerError as exc:
            self._reject(delivery, exc.condition, exc.description)
            return
        if not delivery.settled:
            delivery.update(Disposition.ACCEPTED)
            delivery.settle()
        self.pump(entity)
        if entity.requires_session and self.waiters:
            self._serve_waiters(now)

    def _reject(self, delivery: Delivery, condition: str, description: str) -> None:
        log.info("rejected: %s %s", condition, description)
        if delivery.settled:
            return
        delivery.local.condition = Condition(condition, description, _error_info(description))
        delivery.update(Disposition.REJECTED)
        delivery.settle()

    def pump(self, entity: Entity) -> None:
        for rl in list(self.by_entity.get(entity.path, [])):
            self.send_ready(rl)

    def send_ready(self, rl: ReceiverLink) -> None:
        link = rl.link
        if link.state & Endpoint.LOCAL_CLOSED:
            return
        now = self.now()
        while link.credit > 0:
            stored = rl.entity.next_message(rl.receiver, now)
            if stored is None:
                return
            self._deliver(rl, stored)

    def _deliver(self, rl: ReceiverLink, stored: Stored) -> None:
        link = rl.link
        if stored.lock_token is not None:
            tag = stored.lock_token.bytes_le
            rl.unsettled[tag] = stored.lock_token
        else:
            tag = uuid.uuid4().bytes_le
        delivery = link.delivery(tag)  # type: ignore[arg-type]  # Proton takes bytes tags too
        link.send(stored.encode())
        link.advance()
        if stored.lock_token is None:  # receive-and-delete: the message is gone already
            delivery.settle()

    def _on_settlement(self, link: Link, delivery: Delivery) -> None:
        rl = self.receivers.get(link)
        token = rl.unsettled.pop(_raw_tag(delivery), None) if rl is not None else None
        if rl is None or token is None:
            delivery.settle()
            return
        outcome = _pn.pn_delivery_remote_state(delivery._impl)
        entity, now = rl.entity, self.now()
        try:
            if outcome == _pn.PN_ACCEPTED:
                entity.complete(token, now, rl.receiver)
            elif outcome == _pn.PN_RELEASED:
                entity.release(token, now)
            elif outcome == _pn.PN_MODIFIED:
                undeliverable = delivery.remote.undeliverable
                if undeliverable:
                    entity.defer(token, now, rl.receiver)
                else:
                    entity.abandon(token, now, rl.receiver)
                delivery.local.failed = True
                delivery.local.undeliverable = bool(undeliverable)
            elif outcome == _pn.PN_REJECTED:
                condition = delivery.remote.condition
                info: dict[Any, Any] = {}
                if condition is not None and isinstance(condition.info, dict):
                    info = condition.info
                reason = management.text(info.get("DeadLetterReason", info.get(symbol("DeadLetterReason"))))
                desc = management.text(
                    info.get("DeadLetterErrorDescription", info.get(symbol("DeadLetterErrorDescription")))
                )
                entity.dead_letter_locked(token, reason, desc, now, rl.receiver)
            else:
                delivery.settle()
                return
        except BrokerError as exc:
            delivery.local.condition = Condition(exc.condition, exc.description, _error_info(exc.description))
            delivery.update(Disposition.REJECTED)
            delivery.settle()
            return
        # The SDK blocks until a settled disposition with the same outcome comes back: echo it. (Straight to the C
        # engine: `Delivery.update` first copies local data, annotations and condition, which an echo has none of.)
        _pn.pn_delivery_update(delivery._impl, outcome)
        _pn.pn_delivery_settle(delivery._impl)
        self.pump(entity)

    # --- $cbs -----------------------------------------------------------------------------------------------------

    def _put_token(self, link: Link, delivery: Delivery, payload: bytes) -> None:
        request = Message()
        request.decode(payload)
        props: dict[Any, Any] = request.properties or {}
        audience = str(props.get("name", ""))
        token = request.body.decode() if isinstance(request.body, bytes) else str(request.body)
        # The SDK labels SAS tokens `jwt` too: tell them by their form. Entra tokens cannot be checked locally.
        reason = self.sas.validate(token, time.time()) if token.startswith("SharedAccessSignature ") else None
        status, description = 202, "Accepted"
        if reason is not None:
            status, description = 401, f"InvalidSignature: {reason}"
            log.warning("put-token refused for %s: %s", audience, reason)
        elif not self._audience_exists(audience):
            # As Service Bus does: authorization first, then the entity's existence, both at put-token.
            status = 404
            description = f"The messaging entity '{audience}' could not be found. To know more visit https://aka.ms/sbResourceMgrExceptions."
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        reply_link = self.cbs_replies.get(link.session)
        if reply_link is None:
            return
        reply = Message(
            correlation_id=request.id,
            properties={"status-code": status, "status-description": description},
        )
        self._send_on(reply_link, bytes(reply.encode()))

    def _audience_exists(self, audience: str) -> bool:
        path = _path_of(audience)
        if path.endswith("/$management"):
            path = path[: -len("/$management")]
        return not path or path in self.namespace.entities

    def _send_on(self, link: Link, payload: bytes) -> None:
        delivery = link.delivery(uuid.uuid4().bytes)  # type: ignore[arg-type]
        link.send(payload)
        link.advance()
        delivery.settle()

    # --- $management ----------------------------------------------------------------------------------------------

    def _management(self, link: Link, delivery: Delivery, payload: bytes, entity_path: str) -> None:
        request = Message()
        request.decode(payload)
        delivery.update(Disposition.ACCEPTED)
        delivery.settle()
        props: dict[Any, Any] = request.properties or {}
        operation = str(props.get("operation", ""))
        body = request.body if isinstance(request.body, dict) else {}
        body = {str(k): v for k, v in body.items()}
        status, description, result, condition = 200, "OK", None, None
        try:
            entity = self.namespace.entity(entity_path)
            receiver = self._receiver_named(link, props.get("associated-link-name"))
            status, result = management.operate(entity, operation, body, receiver, self.now())
            if operation == management.UPDATE_DISPOSITION:
                for token in management.settled_tokens(body):
                    self._forget_unsettled(token)
            if status == 204:
                description = "No messages available"
        except BrokerError as exc:
            status, description, condition = management.status_for(exc), exc.description, exc.condition
        except Exception as exc:
            log.exception("management %s failed", operation)
            status, description, condition = 500, f"{type(exc).__name__}: {exc}", "com.microsoft:internal-error"
        reply_props: dict[str, Any] = {"statusCode": status, "statusDescription": description}
        if condition is not None:
            reply_props["errorCondition"] = symbol(condition)
        reply = Message(correlation_id=request.id, properties=reply_props, body=result if result is not None else {})
        replies = self.mgmt_replies.get((link.session, entity_path))
        if replies is None:
            return
        replies.outbox.append(bytes(reply.encode()))
        self._flush(replies)
        if status in (200, 204):
            self.pump(entity)

    def _flush(self, replies: ManagementReplies) -> None:
        while replies.outbox and replies.link.credit > 0:
            self._send_on(replies.link, replies.outbox.popleft())

    def _receiver_named(self, link: Link, name: object) -> Receiver | None:
        if not name:
            return None
        for rl in self.receivers.values():
            if rl.link.name == name and rl.link.connection == link.connection:
                return rl.receiver
        return None

    def _forget_unsettled(self, token: uuid.UUID) -> None:
        for rl in self.receivers.values():
            rl.unsettled.pop(token.bytes_le, None)


T = TypeVar("T")


def _need(value: T | None) -> T:
    """Proton types every event attribute Optional; an event of a given kind always carries its own."""
    if value is None:
        raise RuntimeError("a Proton event lacked the endpoint its kind always carries")
    return value


def _raw_tag(delivery: Delivery) -> bytes:
    """The delivery tag's bytes (Proton's `Delivery.tag` decodes them as UTF-8, which a lock token is not)."""
    tag = _pn.pn_delivery_tag(delivery._impl)
    return bytes(_ffi.buffer(tag.start, tag.size))


def _guard(method: Callable[[BrokerHandler, EndpointEvent], None]) -> Callable[[BrokerHandler, EndpointEvent], None]:
    """One bad frame or bug must not take the broker down: log it and keep serving the other connections."""

    def guarded(self: BrokerHandler, event: EndpointEvent) -> None:
        try:
            method(self, event)
        except Exception:
            log.exception("error handling %s", method.__name__)

    guarded.__name__ = method.__name__
    return guarded


for _name in [n for n in vars(BrokerHandler) if n.startswith("on_")]:
    setattr(BrokerHandler, _name, _guard(getattr(BrokerHandler, _name)))


def _terminus_filter(terminus: Terminus) -> dict[Any, Any]:
    data = terminus.filter
    data.rewind()
    if not data.next():
        return {}
    value = data.get_object()
    return dict(value) if isinstance(value, dict) else {}
