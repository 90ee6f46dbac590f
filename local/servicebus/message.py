"""AMQP 1.0 messages kept as raw sections: the broker reads what it needs and rewrites only what it must.

Proton's `Message` keeps one data section and loses the batch envelope format, so we split the encoded bytes into
sections ourselves, by the AMQP type codes' size prefixes (no decoding), decode a section with Proton only when a
field of it is read, and re-encode only the header and message-annotations — by hand, since they are small, fixed
structures written for every delivery. Bodies travel byte for byte.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from proton import Data, Described, symbol, ulong

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78
_BODY = {DATA, AMQP_SEQUENCE, AMQP_VALUE}
_SYMBOLIC = {
    b"amqp:header:list": HEADER,
    b"amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    b"amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    b"amqp:properties:list": PROPERTIES,
    b"amqp:application-properties:map": APPLICATION_PROPERTIES,
    b"amqp:data:binary": DATA,
    b"amqp:amqp-sequence:list": AMQP_SEQUENCE,
    b"amqp:amqp-value:*": AMQP_VALUE,
    b"amqp:footer:map": FOOTER,
}
# Annotation keys the broker writes on every delivery; a client's own copy of one forces the slow merge path.
_BROKER_KEYS = (b"x-opt-sequence-number", b"x-opt-enqueued-time", b"x-opt-locked-until", b"x-opt-lock-token",
                b"x-opt-message-state", b"x-opt-enqueue-sequence-number", b"x-opt-deadletter-source")  # fmt: skip


class MessageFormatError(ValueError):
    """The bytes are not an AMQP 1.0 message."""


def _skip(buf: bytes, pos: int) -> int:
    """The position just after the AMQP value starting at `pos`, read from its type code's size prefix."""
    code = buf[pos]
    pos += 1
    if code == 0x00:  # described: a descriptor, then the value
        return _skip(buf, _skip(buf, pos))
    width = code & 0xF0
    if 0x40 <= code <= 0x45:
        return pos
    if width == 0x50:
        return pos + 1
    if width == 0x60:
        return pos + 2
    if width == 0x70:
        return pos + 4
    if width == 0x80:
        return pos + 8
    if width == 0x90:
        return pos + 16
    if width in (0xA0, 0xC0, 0xE0):
        return pos + 1 + buf[pos]
    if width in (0xB0, 0xD0, 0xF0):
        return pos + 4 + int.from_bytes(buf[pos : pos + 4], "big")
    raise MessageFormatError(f"unknown AMQP type code 0x{code:02x}")


def _section_code(buf: bytes, pos: int) -> tuple[int, int]:
    """(section code, position of the section's value) for the described value at `pos`."""
    if buf[pos] != 0x00:
        raise MessageFormatError(f"byte {pos}: a message section must be a described value")
    kind = buf[pos + 1]
    if kind == 0x53:  # smallulong
        return buf[pos + 2], pos + 3
    if kind == 0x80:  # ulong
        return int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
    if kind == 0x44:  # ulong0
        return 0, pos + 2
    if kind in (0xA3, 0xB3):  # a symbolic descriptor
        end = _skip(buf, pos + 1)
        name = buf[pos + 3 : end] if kind == 0xA3 else buf[pos + 6 : end]
        code = _SYMBOLIC.get(bytes(name))
        if code is None:
            raise MessageFormatError(f"unknown section descriptor {bytes(name)!r}")
        return code, end
    raise MessageFormatError(f"byte {pos}: unsupported descriptor type 0x{kind:02x}")


def _plain(value: Any) -> Any:
    """Copies Proton's buffer views out at once (they are reused by the next decode)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Section:
    __slots__ = ("__dict__", "code", "raw", "value_at")

    def __init__(self, code: int, raw: bytes, value_at: int) -> None:
        self.code, self.raw, self.value_at = code, raw, value_at

    @cached_property
    def value(self) -> Any:
        """The section's value, decoded with Proton on first use."""
        data = Data()
        data.decode(self.raw)
        data.rewind()
        data.next()
        obj = data.get_object()
        return _plain(obj.value) if isinstance(obj, Described) else None


def split_sections(encoded: bytes) -> list[Section]:
    sections: list[Section] = []
    pos, size = 0, len(encoded)
    try:
        while pos < size:
            code, value_at = _section_code(encoded, pos)
            end = _skip(encoded, value_at)
            if end > size:
                raise MessageFormatError(f"section at byte {pos} runs past the end of the message")
            if not HEADER <= code <= FOOTER:
                raise MessageFormatError(f"byte {pos}: 0x{code:x} is not a message section")
            sections.append(Section(code, encoded[pos:end], value_at - pos))
            pos = end
    except IndexError:
        raise MessageFormatError("truncated AMQP message") from None
    if not sections:
        raise MessageFormatError("empty message")
    return sections


def encode_section(code: int, value: Any) -> bytes:
    data = Data()
    data.put_object(Described(ulong(code), value))
    return bytes(data.encode())


def _field(values: Any, index: int) -> Any:
    return values[index] if isinstance(values, list) and len(values) > index else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass(frozen=True)
class BrokerAnnotations:
    """The x-opt-* annotations Service Bus puts on every delivered message."""

    sequence_number: int
    enqueued_time: float
    locked_until: float | None
    lock_token: uuid.UUID | None
    state: int
    dead_letter_source: str | None = None

    def encoded_entries(self) -> tuple[bytes, int]:
        """(map entries, number of keys) in AMQP encoding."""
        out = [
            _sym(b"x-opt-sequence-number") + b"\x81" + struct.pack(">q", self.sequence_number),
            _sym(b"x-opt-enqueue-sequence-number") + b"\x81" + struct.pack(">q", self.sequence_number),
            _sym(b"x-opt-enqueued-time") + b"\x83" + struct.pack(">q", int(self.enqueued_time * 1000)),
            _sym(b"x-opt-message-state") + b"\x71" + struct.pack(">i", self.state),
        ]
        if self.locked_until is not None:
            out.append(_sym(b"x-opt-locked-until") + b"\x83" + struct.pack(">q", int(self.locked_until * 1000)))
        if self.lock_token is not None:
            out.append(_sym(b"x-opt-lock-token") + b"\x98" + self.lock_token.bytes)
        if self.dead_letter_source is not None:
            out.append(_sym(b"x-opt-deadletter-source") + _str(self.dead_letter_source))
        return b"".join(out), len(out)

    def as_dict(self) -> dict[Any, Any]:
        from proton import timestamp

        ann: dict[Any, Any] = {
            symbol("x-opt-sequence-number"): self.sequence_number,
            symbol("x-opt-enqueue-sequence-number"): self.sequence_number,
            symbol("x-opt-enqueued-time"): timestamp(int(self.enqueued_time * 1000)),
            symbol("x-opt-message-state"): self.state,
        }
        if self.locked_until is not None:
            ann[symbol("x-opt-locked-until")] = timestamp(int(self.locked_until * 1000))
        if self.lock_token is not None:
            ann[symbol("x-opt-lock-token")] = self.lock_token
        if self.dead_letter_source is not None:
            ann[symbol("x-opt-deadletter-source")] = self.dead_letter_source
        return ann


def _sym(name: bytes) -> bytes:
    return b"\xa3" + bytes([len(name)]) + name


def _str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return (b"\xa1" + bytes([len(raw)]) if len(raw) < 256 else b"\xb1" + struct.pack(">I", len(raw))) + raw


def _map_entries(section: Section) -> tuple[bytes, int]:
    """The raw entries and key count of a map section (map8 0xc1 or map32 0xd1)."""
    raw, at = section.raw, section.value_at
    if raw[at] == 0xC1:
        return raw[at + 3 :], raw[at + 2] // 2
    if raw[at] == 0xD1:
        return raw[at + 9 :], int.from_bytes(raw[at + 5 : at + 9], "big") // 2
    return b"", 0


def _header(durable: bool, priority: int, ttl_ms: int | None, first_acquirer: bool, delivery_count: int) -> bytes:
    # Always a full header: Proton-style encoders omit an all-default one, and the SDK then reports no delivery count.
    fields = (
        (b"\x41" if durable else b"\x42")
        + b"\x50" + bytes([priority & 0xFF])
        + (b"\x40" if ttl_ms is None else b"\x70" + struct.pack(">I", ttl_ms))
        + (b"\x41" if first_acquirer else b"\x42")
        + b"\x70" + struct.pack(">I", delivery_count)
    )  # fmt: skip
    return b"\x00\x53\x70\xc0" + bytes([len(fields) + 1, 5]) + fields


class AmqpMessage:
    """One message: its raw sections plus the fields the broker acts on, decoded on first use."""

    def __init__(self, sections: list[Section]) -> None:
        self.sections = sections
        self._by_code = {s.code: s for s in sections if s.code not in _BODY}

    @classmethod
    def decode(cls, encoded: bytes) -> AmqpMessage:
        return cls(split_sections(encoded))

    def _value(self, code: int) -> Any:
        section = self._by_code.get(code)
        return section.value if section is not None else None

    @property
    def header(self) -> list[Any]:
        value = self._value(HEADER)
        return list(value) if isinstance(value, list) else []

    @property
    def properties(self) -> list[Any]:
        value = self._value(PROPERTIES)
        return list(value) if isinstance(value, list) else []

    @property
    def application_properties(self) -> dict[Any, Any]:
        value = self._value(APPLICATION_PROPERTIES)
        return dict(value) if isinstance(value, dict) else {}

    @property
    def annotations(self) -> dict[Any, Any]:
        value = self._value(MESSAGE_ANNOTATIONS)
        return dict(value) if isinstance(value, dict) else {}

    @cached_property
    def message_id(self) -> str | None:
        return _text(_field(self.properties, 0))

    @cached_property
    def session_id(self) -> str | None:
        return _text(_field(self.properties, 10))

    @cached_property
    def ttl_seconds(self) -> float | None:
        ttl = _field(self.header, 2)
        return int(ttl) / 1000 if ttl is not None else None

    @cached_property
    def scheduled_enqueue_time(self) -> float | None:
        section = self._by_code.get(MESSAGE_ANNOTATIONS)
        if section is None or b"x-opt-scheduled-enqueue-time" not in section.raw:
            return None
        value = self.annotations.get(symbol("x-opt-scheduled-enqueue-time"))
        return int(value) / 1000 if value is not None else None

    @cached_property
    def _tail(self) -> bytes:
        """Everything after the annotations, as it came: properties, application-properties, body, footer."""
        return b"".join(
            s.raw for s in self.sections if s.code not in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS)
        )

    def batch_members(self) -> list[AmqpMessage] | None:
        """The messages inside a batch envelope (message-format 0x80013700), or None for a plain message.

        Proton does not tell us the message-format, so a batch is recognised by its shape: no header, and a body of
        data sections each of which is itself a complete AMQP message.
        """
        body = [s for s in self.sections if s.code in _BODY]
        if HEADER in self._by_code or not body or any(s.code != DATA for s in body):
            return None
        members = []
        for s in body:
            payload = _data_payload(s)
            if not payload.startswith(b"\x00"):
                return None
            try:
                members.append(AmqpMessage.decode(payload))
            except MessageFormatError:
                return None
        return members

    def encode(
        self,
        *,
        delivery_count: int,
        broker: BrokerAnnotations,
        application_properties: dict[str, Any] | None = None,
    ) -> bytes:
        """The message as delivered: a fresh header and message-annotations, other sections as they came."""
        header = self.header if HEADER in self._by_code else []
        header += [None] * (5 - len(header))
        durable = bool(header[0])
        priority = int(header[1]) if header[1] is not None else 4
        ttl = int(header[2]) if header[2] is not None else None
        out = [_header(durable, priority, ttl, delivery_count == 0, delivery_count), self._annotations(broker)]
        if application_properties is None:
            out.append(self._tail)
            return b"".join(out)
        rewritten = encode_section(APPLICATION_PROPERTIES, {**self.application_properties, **application_properties})
        for s in self.sections:
            if s.code in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS):
                continue
            if rewritten and s.code in (APPLICATION_PROPERTIES, *_BODY, FOOTER):
                out.append(rewritten)  # in its place: after properties, before the body
                rewritten = b""
                if s.code == APPLICATION_PROPERTIES:
                    continue
            out.append(s.raw)
        out.append(rewritten)
        return b"".join(out)

    def _annotations(self, broker: BrokerAnnotations) -> bytes:
        own = self._by_code.get(MESSAGE_ANNOTATIONS)
        if own is not None and any(key in own.raw for key in _BROKER_KEYS):
            return encode_section(MESSAGE_ANNOTATIONS, {**self.annotations, **broker.as_dict()})
        entries, keys = broker.encoded_entries()
        if own is not None:
            theirs, their_keys = _map_entries(own)
            entries, keys = theirs + entries, their_keys + keys
        return b"\x00\x53\x72\xd1" + struct.pack(">II", len(entries) + 4, keys * 2) + entries


def _data_payload(section: Section) -> bytes:
    """The bytes of a data section (vbin8 0xa0 or vbin32 0xb0 after its descriptor)."""
    raw, at = section.raw, section.value_at
    if raw[at] == 0xA0:
        return raw[at + 2 : at + 2 + raw[at + 1]]
    if raw[at] == 0xB0:
        size = int.from_bytes(raw[at + 1 : at + 5], "big")
        return raw[at + 5 : at + 5 + size]
    return b""
