"""The broker's I/O loop: Proton's protocol engine (Connection, Transport, Collector) driven by `selectors`.

Proton's own reactor dispatches every event through several layers of pure-Python handlers; the broker needs none
of them, so it feeds sockets to transports and hands the collector's events straight to its handler.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from cproton import ffi as _ffi
from cproton import lib as _pn
from proton import Collector, Connection, Delivery, EventType, Link, Session, Transport

from local.servicebus.frames import TransferIdScrubber
from local.servicebus.server import TICK_SECONDS, BrokerHandler, EndpointEvent

log = logging.getLogger("local.servicebus")
READ_CHUNK = 64 * 1024
WRITE_CHUNK = 1024 * 1024


class _RawEvent:
    """A collector event whose endpoints are wrapped only when the handler reads them.

    Proton's `Event.wrap` builds Python wrappers for the delivery, link, session, connection and transport of every
    event up front; on the settle path that was a fifth of the broker's CPU. Valid only until the event is popped.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    @property
    def connection(self) -> Connection | None:
        return cast(Connection | None, Connection.wrap(_pn.pn_event_connection(self._raw)))  # type: ignore[no-untyped-call]

    @property
    def session(self) -> Session | None:
        return cast(Session | None, Session.wrap(_pn.pn_event_session(self._raw)))  # type: ignore[no-untyped-call]

    @property
    def link(self) -> Link | None:
        return cast(Link | None, Link.wrap(_pn.pn_event_link(self._raw)))  # type: ignore[no-untyped-call]

    @property
    def delivery(self) -> Delivery | None:
        return cast(Delivery | None, Delivery.wrap(_pn.pn_event_delivery(self._raw)))  # type: ignore[no-untyped-call]

    @property
    def transport(self) -> Transport | None:
        return Transport.wrap(_pn.pn_event_transport(self._raw))


@dataclass(eq=False)
class _Peer:
    sock: socket.socket
    address: str
    transport: Transport
    connection: Connection
    collector: Collector
    scrubber: TransferIdScrubber = field(default_factory=TransferIdScrubber)
    writing: bool = False
    closed: bool = field(default=False)


class BrokerLoop:
    def __init__(self, handler: BrokerHandler, host: str, port: int) -> None:
        self.handler = handler
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.peers: list[_Peer] = []
        # Event type number -> the handler's method, or None: most events (transport, link state…) have no
        # handler, and wrapping each one in Proton's Python objects cost more than the broker's own work.
        self._methods: dict[int, Callable[[EndpointEvent], None] | None] = {}
        self._inbox = bytearray(READ_CHUNK)
        self._inbox_address = _ffi.from_buffer(self._inbox)
        self._inbox_view = memoryview(self._inbox)
        self._outbox = bytearray(WRITE_CHUNK)
        self._outbox_address = _ffi.from_buffer(self._outbox)
        self._outbox_view = memoryview(self._outbox)

    def run(self) -> None:
        log.info("broker listening on amqp://%s:%d", *self.listener.getsockname()[:2])
        next_tick = time.monotonic() + TICK_SECONDS
        while not self.handler.stopping:
            timeout = max(0.0, next_tick - time.monotonic())
            for key, mask in self.selector.select(timeout):
                if key.data is None:
                    self._accept()
                    continue
                peer: _Peer = key.data
                if mask & selectors.EVENT_READ:
                    self._read(peer)
                if mask & selectors.EVENT_WRITE:
                    self._write(peer)
            if time.monotonic() >= next_tick:
                self.handler.tick()
                next_tick = time.monotonic() + TICK_SECONDS
            self._settle_all()
        log.info("broker stopping")
        for peer in list(self.peers):
            self._close(peer)
        self.selector.close()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = Connection()
            transport = Transport(Transport.SERVER)
            sasl = transport.sasl()
            sasl.allowed_mechs("ANONYMOUS")
            sasl.allow_insecure_mechs = True
            transport.bind(connection)
            collector = Collector()
            connection.collect(collector)
            peer = _Peer(sock, f"{address[0]}:{address[1]}", transport, connection, collector)
            self.peers.append(peer)
            self.selector.register(sock, selectors.EVENT_READ, peer)
            log.info("connection from %s", peer.address)

    def _read(self, peer: _Peer) -> None:
        # Straight to Proton's C transport: the Python wrappers' checks cost as much as the copy itself.
        transport = peer.transport._impl
        capacity = _pn.pn_transport_capacity(transport) - peer.scrubber.held
        if capacity <= 0:
            return
        try:
            received = peer.sock.recv_into(self._inbox, min(capacity, READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            received = 0
        if received:
            incoming = peer.scrubber.feed(self._inbox_view[:received])
            if isinstance(incoming, memoryview):  # the inbox itself, or its start: no copy
                if incoming:
                    _pn.pn_transport_push(transport, self._inbox_address, len(incoming))
            else:
                _pn.pn_transport_push(transport, _ffi.from_buffer(incoming), len(incoming))
        else:
            _pn.pn_transport_close_tail(transport)

    def _write(self, peer: _Peer) -> None:
        transport = peer.transport._impl
        pending = _pn.pn_transport_pending(transport)
        if pending > 0:
            size = _pn.pn_transport_peek(transport, self._outbox_address, min(pending, WRITE_CHUNK))
            try:
                sent = peer.sock.send(self._outbox_view[:size])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                _pn.pn_transport_close_head(transport)
                sent = 0
            if sent:
                _pn.pn_transport_pop(transport, sent)
            pending = _pn.pn_transport_pending(transport)  # what is left, or below zero once the head is closed
        elif pending < 0:
            _pn.pn_transport_close_head(transport)
        wants = pending > 0
        if wants != peer.writing and not peer.closed:
            peer.writing = wants
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if wants else 0)
            self.selector.modify(peer.sock, events, peer)

    def _settle_all(self) -> None:
        """Runs every queued event of every connection (one connection's event can wake another's link)."""
        busy = True
        while busy:
            busy = False
            for peer in self.peers:
                collector = peer.collector._impl
                raw = _pn.pn_collector_peek(collector)
                while raw:
                    busy = True
                    number = _pn.pn_event_type(raw)
                    if number not in self._methods:
                        self._methods[number] = getattr(self.handler, EventType.TYPES[number].method, None)
                    method = self._methods[number]
                    if method is not None:
                        method(_RawEvent(raw))
                    _pn.pn_collector_pop(collector)
                    raw = _pn.pn_collector_peek(collector)
        for peer in list(self.peers):
            self._write(peer)
            if _pn.pn_transport_closed(peer.transport._impl):
                self._close(peer)

    def _close(self, peer: _Peer) -> None:
        if peer.closed:
            return
        peer.closed = True
        self.handler.drop_connection(peer.connection)
        try:
            self.selector.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()
        peer.transport.unbind()
        self.peers.remove(peer)


def run(handler: BrokerHandler, host: str, port: int) -> None:
    BrokerLoop(handler, host, port).run()
