"""The broker's I/O loop: Proton's protocol engine (Connection, Transport, Collector) driven by `selectors`.

Proton's own reactor dispatches every event through several layers of pure-Python handlers; the broker needs none
of them, so it feeds sockets to transports and hands the collector's events straight to its handler.
"""

from __future__ import annotations

import logging
import selectors
import socket
import time
from dataclasses import dataclass, field

from proton import Collector, Connection, Transport

from local.servicebus.server import TICK_SECONDS, BrokerHandler

log = logging.getLogger("local.servicebus")
READ_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Peer:
    sock: socket.socket
    address: str
    transport: Transport
    connection: Connection
    collector: Collector
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
        capacity = peer.transport.capacity()
        if capacity < 0:
            return
        try:
            data = peer.sock.recv(max(capacity, 1) if capacity else READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            peer.transport.push(data)
        else:
            peer.transport.close_tail()

    def _write(self, peer: _Peer) -> None:
        pending = peer.transport.pending()
        if pending > 0:
            try:
                sent = peer.sock.send(peer.transport.peek(pending) or b"")
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                peer.transport.close_head()
                sent = 0
            if sent:
                peer.transport.pop(sent)
        elif pending < 0:
            peer.transport.close_head()
        wants = peer.transport.pending() > 0
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
                event = peer.collector.peek()
                while event is not None:
                    busy = True
                    method = getattr(self.handler, event.type.method, None)
                    if method is not None:
                        method(event)
                    peer.collector.pop()
                    event = peer.collector.peek()
        for peer in list(self.peers):
            self._write(peer)
            if peer.transport.closed:
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
