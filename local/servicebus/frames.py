"""Incoming AMQP bytes, before Proton sees them: drop the delivery-id of every transfer frame a client sends.

Why: the azure-servicebus SDK (7.15, pure-Python AMQP) reads its session's next delivery-id, awaits the socket
write, and only then increments it. Concurrent sends on one AMQP session (an `AutoLockRenewer` renewing several
message locks on a receiver's `$management` link, `asyncio.gather` of settlements or renewals) therefore send the
same delivery-id twice. Service Bus accepts that; Proton ends the connection with `amqp:session:invalid-field
sequencing error, expected delivery-id 2, got 1`. A transfer frame may omit the delivery-id (AMQP 1.0 §2.7.5: it
is only required on the first frame of a delivery, and Proton then takes the next one in sequence), so the broker
removes it: Proton numbers the deliveries itself, which is what the client's counter says once its sends are done,
and its settlements of a racing pair cover both of the client's equal ids.
"""

from __future__ import annotations

PROTOCOL_HEADER = b"AMQP"
BEGIN, TRANSFER = 0x11, 0x14  # performative descriptors (smallulong)
_NULL = 0x40
# uint encodings: uint0 (no bytes), smalluint (1 byte), uint (4 bytes); null
_UINT_WIDTH = {0x43: 0, 0x52: 1, 0x70: 4, 0x40: 0}
# The most bytes past the frame header that locate a transfer's delivery-id: descriptor 3, list32 header 9,
# handle 5, delivery-id 5.
_HEAD = 32


Bytes = bytes | memoryview


class TransferIdScrubber:
    """One connection's incoming byte stream: passes it on, rewriting only the transfer frames' delivery-ids."""

    __slots__ = ("_carry", "_numbered", "_skip")

    def __init__(self) -> None:
        self._numbered: set[int] = set()  # channels whose session has had its first transfer (which keeps its id)
        self._skip = 0  # bytes of the current frame (or protocol header) still to pass on unchanged
        self._carry = b""  # the start of a frame whose head has not fully arrived yet

    @property
    def held(self) -> int:
        """Bytes held back from the last read (the next push carries them too)."""
        return len(self._carry)

    def feed(self, data: Bytes) -> Bytes:
        """What to hand to Proton for `data`: `data` itself or a prefix of it when nothing needs rewriting."""
        if self._carry:
            data = self._carry + bytes(data)
            self._carry = b""
        size = len(data)
        if self._skip >= size:
            self._skip -= size
            return data
        out: list[Bytes] = []
        start = 0  # first byte not yet copied to out
        pos = self._skip  # at a frame boundary
        while size - pos >= 8:
            if data[pos : pos + 4] == PROTOCOL_HEADER:
                pos += 8
                continue
            frame_size = max(int.from_bytes(data[pos : pos + 4], "big"), 8)  # below 8: Proton reports it
            if data[pos + 5] == 0 and frame_size > 8:  # an AMQP frame with a body (not SASL, not a heartbeat)
                head = min(frame_size, data[pos + 4] * 4 + _HEAD)
                if size - pos < head:
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
            return None
        if performative != TRANSFER:
            return None
        if channel not in self._numbered:
            self._numbered.add(channel)
            return None
        return _delivery_id_span(data, body + 3, pos + frame_size)


def _delivery_id_span(data: Bytes, at: int, frame_end: int) -> tuple[int, int, int, bool] | None:
    """Where a transfer's delivery-id lies (`at`: its field list): first byte, end, list size offset, list32?"""
    kind = data[at]
    if kind == 0xC0:
        list_size_at, wide, at = at + 1, False, at + 3
    elif kind == 0xD0:
        list_size_at, wide, at = at + 1, True, at + 9
    else:
        return None
    handle_width = _UINT_WIDTH.get(data[at])
    if handle_width is None or data[at + 1 + handle_width] == _NULL:
        return None
    at += 1 + handle_width
    id_width = _UINT_WIDTH.get(data[at])
    if id_width is None or at + 1 + id_width > frame_end:
        return None
    return at, at + 1 + id_width, list_size_at, wide


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
