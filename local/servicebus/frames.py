"""Incoming AMQP bytes, before Proton sees them: drop the delivery-id of every transfer frame a client sends.

Why: the azure-servicebus SDK (7.15, pure-Python AMQP) reads its session's next delivery-id, awaits the socket
write, and only then increments it. Concurrent sends on one AMQP session (an `AutoLockRenewer` renewing several
message locks on a receiver's `$management` link, `asyncio.gather` of settlements or renewals) therefore send the
same delivery-id twice. Service Bus accepts that; Proton ends the connection with `amqp:session:invalid-field
sequencing error, expected delivery-id 2, got 1`. A transfer frame may omit the delivery-id (AMQP 1.0 §2.7.5: it
is only required on the first frame of a delivery, and Proton then takes the next one in sequence), so the broker
removes it from single-frame deliveries: Proton numbers them itself, which is what the client's counter says once
its sends are done, and its settlements of a racing pair cover both of the client's equal ids. Proton wants the id
on a session's first transfer and on every frame of a multi-frame delivery (large batches): those keep theirs.

Frames a client sends on a channel after its own `end` there (and before a new `begin`) are dropped too. The SDK's
receivers close their link, end their session, and only then detach the session's `$management` link; Proton answers
that detach with `amqp:not-allowed no such channel` and closes the whole connection, so closing every session receiver
ended in a connection error instead of a clean close. Nothing on an ended channel can still mean anything (AMQP 1.0
§2.5.5: once the end is sent the endpoint may be reused for a new `begin` only).
"""

from __future__ import annotations

PROTOCOL_HEADER = b"AMQP"
BEGIN, TRANSFER, END = 0x11, 0x14, 0x17  # performative descriptors (smallulong)
_WATCHED = frozenset((BEGIN, TRANSFER, END))
_NULL = 0x40
_TRUE = 0x41
# Widths after the constructor byte: null, uint0, smalluint, uint; boolean true/false, boolean (1 byte).
_FIXED_WIDTH = {0x40: 0, 0x43: 0, 0x52: 1, 0x70: 4, 0x41: 0, 0x42: 0, 0x56: 1}
_UINT_WIDTH = {0x43: 0, 0x52: 1, 0x70: 4, 0x40: 0}
# The bytes past the frame header that hold a transfer's fields up to `more`: descriptor 3, list32 header 9,
# handle 5, delivery-id 5, delivery-tag (the SDK's are 16 bytes) 37, message-format 5, settled 2, more 2.
_HEAD = 80


Bytes = bytes | memoryview


class TransferIdScrubber:
    """One connection's incoming byte stream: passes it on, rewriting only the transfer frames' delivery-ids."""

    __slots__ = ("_carry", "_drop", "_ended", "_headers", "_numbered", "_partial", "_skip")

    def __init__(self) -> None:
        self._headers = 2  # protocol headers still to come: SASL's, then AMQP's
        self._numbered: set[int] = set()  # channels whose session has had its first transfer (which keeps its id)
        self._partial: set[tuple[int, int]] = set()  # (channel, handle) in the middle of a multi-frame delivery
        self._skip = 0  # bytes of the current frame (or protocol header) still to pass on unchanged
        self._carry = b""  # the start of a frame whose head has not fully arrived yet
        self._ended: set[int] = set()  # channels whose session the client has ended (until it begins a new one)
        self._drop = 0  # bytes of a frame on an ended channel still to discard

    @property
    def held(self) -> int:
        """Bytes held back from the last read (the next push carries them too)."""
        return len(self._carry)

    def feed(self, data: Bytes) -> Bytes:
        """What to hand to Proton for `data`: `data` itself or a prefix of it when nothing needs rewriting."""
        if self._carry:
            data = self._carry + bytes(data)
            self._carry = b""
        if self._drop:
            dropped = min(self._drop, len(data))
            self._drop -= dropped
            data = bytes(data[dropped:])  # a copy: the loop hands a memoryview result to Proton from the inbox's start
        size = len(data)
        if self._skip >= size:
            self._skip -= size
            return data
        out: list[Bytes] = []
        start = 0  # first byte not yet copied to out
        pos = self._skip  # at a frame boundary
        while size - pos >= 8:
            if self._headers and data[pos : pos + 4] == PROTOCOL_HEADER:
                self._headers -= 1
                pos += 8
                continue
            frame_size = int.from_bytes(data[pos : pos + 4], "big")
            if frame_size <= 8 or data[pos + 5]:  # a heartbeat, a SASL frame, or malformed (Proton reports it)
                pos += max(frame_size, 8)
                continue
            body = pos + data[pos + 4] * 4
            if body + 3 > size:
                break
            ended = self._ended  # empty but for the moments after a client ends a session: no cost per frame
            if ended and data[body + 2] != BEGIN and int.from_bytes(data[pos + 6 : pos + 8], "big") in ended:
                out.append(data[start:pos])
                start = min(pos + frame_size, size)
                self._drop = pos + frame_size - start
                pos = start
                continue
            if data[body + 2] in _WATCHED:  # most frames (flow, disposition) need nothing more
                if size - pos < min(frame_size, body - pos + _HEAD):
                    break
                cut = self._transfer_id(data, pos, frame_size)
                if cut is not None:
                    out.append(data[start:pos])
                    out.append(_shrunk(data, pos, frame_size, *cut))
                    start = cut[1]
            pos += frame_size
        if pos < size:  # a frame head cut short: keep it for the next read
            self._carry = bytes(data[pos:])
            self._skip, end = 0, pos
        else:
            self._skip, end = pos - size, size
        if not out:
            return data if end == size else data[:end]
        out.append(data[start:end])
        return b"".join(out)

    def _transfer_id(self, data: Bytes, pos: int, frame_size: int) -> tuple[int, int, int, bool] | None:
        """The delivery-id to drop from this frame, if it is a transfer but not its session's first one."""
        body = pos + data[pos + 4] * 4
        if data[body : body + 2] != b"\x00\x53":
            return None
        performative = data[body + 2]
        channel = int.from_bytes(data[pos + 6 : pos + 8], "big")
        if performative == BEGIN:
            self._numbered.discard(channel)  # a new session on this channel: its first transfer sets the count
            self._ended.discard(channel)
            return None
        if performative == END:
            self._ended.add(channel)
            return None
        if performative != TRANSFER:
            return None
        try:
            fields = _transfer_fields(data, body + 3, pos + frame_size)
        except IndexError:  # a delivery tag longer than any the SDK sends, cut by the read: leave the frame be
            return None
        if fields is None:
            return None
        handle, id_at, id_end, more, list_size_at, wide = fields
        first_of_session = channel not in self._numbered
        self._numbered.add(channel)
        continuing = (channel, handle) in self._partial
        if more:
            self._partial.add((channel, handle))
        else:
            self._partial.discard((channel, handle))
        if first_of_session or continuing or more or data[id_at] == _NULL:
            return None
        return id_at, id_end, list_size_at, wide


def _transfer_fields(data: Bytes, at: int, frame_end: int) -> tuple[int, int, int, bool, int, bool] | None:
    """A transfer's field list (`at`): handle, delivery-id start and end, more, list size offset, list32?"""
    kind = data[at]
    if kind == 0xC0:
        list_size_at, wide, count, at = at + 1, False, data[at + 2], at + 3
    elif kind == 0xD0:
        list_size_at, wide, count, at = at + 1, True, int.from_bytes(data[at + 5 : at + 9], "big"), at + 9
    else:
        return None
    if count < 2:
        return None
    handle_width = _UINT_WIDTH.get(data[at])
    if handle_width is None:
        return None
    handle = int.from_bytes(data[at + 1 : at + 1 + handle_width], "big")
    id_at = at + 1 + handle_width
    id_width = _UINT_WIDTH.get(data[id_at])
    if id_width is None:
        return None
    id_end = id_at + 1 + id_width
    more, at = False, id_end
    for index in range(2, min(count, 6)):  # delivery-tag, message-format, settled, more
        constructor = data[at]
        if index == 5:
            more = constructor == _TRUE or (constructor == 0x56 and data[at + 1] == 1)
            break
        if constructor == 0xA0:
            at += 2 + data[at + 1]
        elif constructor == 0xB0:
            at += 5 + int.from_bytes(data[at + 1 : at + 5], "big")
        elif constructor in _FIXED_WIDTH:
            at += 1 + _FIXED_WIDTH[constructor]
        else:
            return None
    if at > frame_end:
        return None
    return handle, id_at, id_end, more, list_size_at, wide


def _shrunk(data: Bytes, pos: int, frame_size: int, first: int, last: int, list_size_at: int, wide: bool) -> bytes:
    """The frame from `pos` up to its delivery-id, with the delivery-id null and the sizes adjusted."""
    delta = (last - first) - 1
    head = bytearray(data[pos:first])
    head.append(_NULL)
    head[0:4] = (frame_size - delta).to_bytes(4, "big")
    at = list_size_at - pos
    if wide:
        head[at : at + 4] = (int.from_bytes(head[at : at + 4], "big") - delta).to_bytes(4, "big")
    else:
        head[at] -= delta
    return bytes(head)
