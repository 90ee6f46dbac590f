"""AMQP 1.0 messages kept as raw sections: the broker reads what it needs and rewrites only what it must.

Proton's `Message` keeps one data section and loses the batch envelope format, so we split the encoded bytes
into sections ourselves (each a described value), decode only the small ones we read (header, annotations,
properties, application-properties), and re-encode only the header, message-annotations and — when
dead-lettering — application-properties. Bodies travel byte for byte.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from proton import Data, Described, symbol, timestamp, ubyte, uint, ulong

HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES = 0x70, 0x71, 0x72, 0x73, 0x74
DATA, AMQP_SEQUENCE, AMQP_VALUE, FOOTER = 0x75, 0x76, 0x77, 0x78
_BODY = {DATA, AMQP_SEQUENCE, AMQP_VALUE}
_SYMBOLIC = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": AMQP_SEQUENCE,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": FOOTER,
}
_DECODED = {HEADER, MESSAGE_ANNOTATIONS, PROPERTIES, APPLICATION_PROPERTIES}


class MessageFormatError(ValueError):
    """The bytes are not an AMQP 1.0 message."""


def _section_code(descriptor: object) -> int:
    if isinstance(descriptor, int):
        return int(descriptor)
    code = _SYMBOLIC.get(str(descriptor))
    if code is None:
        raise MessageFormatError(f"unknown section descriptor {descriptor!r}")
    return code


def _plain(value: Any) -> Any:
    """Copies Proton's buffer views out at once (they are reused by the next decode)."""
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Section:
    code: int
    raw: bytes
    value: Any = None  # decoded for header, annotations, properties and application-properties only


def split_sections(encoded: bytes) -> list[Section]:
    sections: list[Section] = []
    view = memoryview(encoded)
    pos = 0
    while pos < len(encoded):
        data = Data()
        try:
            consumed = data.decode(bytes(view[pos:]))
        except Exception as exc:
            raise MessageFormatError(f"undecodable AMQP value at byte {pos}: {exc}") from None
        if consumed <= 0:
            raise MessageFormatError(f"undecodable AMQP value at byte {pos}")
        data.rewind()
        data.next()
        obj = data.get_object()
        if not isinstance(obj, Described):
            raise MessageFormatError(f"byte {pos}: a message section must be a described value")
        code = _section_code(obj.descriptor)
        if not HEADER <= code <= FOOTER:
            raise MessageFormatError(f"byte {pos}: 0x{code:x} is not a message section")
        raw = bytes(view[pos : pos + consumed])
        sections.append(Section(code, raw, _plain(obj.value) if code in _DECODED else None))
        pos += consumed
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


@dataclass
class AmqpMessage:
    """One message: its raw sections plus the fields the broker acts on."""

    sections: list[Section]
    annotations: dict[Any, Any] = field(default_factory=dict)

    @classmethod
    def decode(cls, encoded: bytes) -> AmqpMessage:
        sections = split_sections(encoded)
        annotations: dict[Any, Any] = {}
        for s in sections:
            if s.code == MESSAGE_ANNOTATIONS and isinstance(s.value, dict):
                annotations = dict(s.value)
        return cls(sections, annotations)

    def _value(self, code: int) -> Any:
        return next((s.value for s in self.sections if s.code == code), None)

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
    def message_id(self) -> str | None:
        return _text(_field(self.properties, 0))

    @property
    def session_id(self) -> str | None:
        return _text(_field(self.properties, 10))

    @property
    def ttl_seconds(self) -> float | None:
        ttl = _field(self.header, 2)
        return int(ttl) / 1000 if ttl is not None else None

    @property
    def scheduled_enqueue_time(self) -> float | None:
        value = self.annotations.get(symbol("x-opt-scheduled-enqueue-time"))
        return int(value) / 1000 if value is not None else None

    def batch_members(self) -> list[AmqpMessage] | None:
        """The messages inside a batch envelope (message-format 0x80013700), or None for a plain message.

        Proton does not tell us the message-format, so a batch is recognised by its shape: no header, and a body of
        data sections each of which is itself a complete AMQP message.
        """
        body = [s for s in self.sections if s.code in _BODY]
        if self._value(HEADER) is not None or not body or any(s.code != DATA for s in body):
            return None
        members = []
        for s in body:
            payload = _data_payload(s.raw)
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
        annotations: dict[Any, Any],
        application_properties: dict[str, Any] | None = None,
    ) -> bytes:
        """The message as delivered: a fresh header and message-annotations, other sections as they came."""
        header = self.header + [None] * (5 - len(self.header))
        durable = bool(header[0]) if header[0] is not None else False
        priority = header[1] if header[1] is not None else 4
        first_acquirer = delivery_count == 0
        # Always a full header: Proton omits an all-default one and the SDK then reports delivery_count None.
        out = [encode_section(HEADER, [durable, ubyte(int(priority)), header[2], first_acquirer, uint(delivery_count)])]
        out.append(encode_section(MESSAGE_ANNOTATIONS, {**self.annotations, **annotations}))
        rewritten_app = None
        if application_properties is not None:
            rewritten_app = encode_section(
                APPLICATION_PROPERTIES, {**self.application_properties, **application_properties}
            )
        for s in self.sections:
            if s.code in (HEADER, DELIVERY_ANNOTATIONS, MESSAGE_ANNOTATIONS):
                continue
            if rewritten_app is not None and s.code in (APPLICATION_PROPERTIES, *_BODY, FOOTER):
                out.append(rewritten_app)  # in its place: after properties, before the body
                rewritten_app = None
                if s.code == APPLICATION_PROPERTIES:
                    continue
            out.append(s.raw)
        if rewritten_app is not None:
            out.append(rewritten_app)
        return b"".join(out)


def _data_payload(raw: bytes) -> bytes:
    """The bytes of a data section (descriptor 0x00 0x53 0x75, then vbin8 0xa0 or vbin32 0xb0)."""
    kind = raw[3]
    if kind == 0xA0:
        return raw[5 : 5 + raw[4]]
    if kind == 0xB0:
        size = int.from_bytes(raw[4:8], "big")
        return raw[8 : 8 + size]
    return b""


def broker_annotations(
    *,
    sequence_number: int,
    enqueued_time: float,
    locked_until: float | None,
    lock_token: uuid.UUID | None,
    state: int,
    dead_letter_source: str | None = None,
) -> dict[Any, Any]:
    """The x-opt-* annotations Service Bus puts on every delivered message."""
    ann: dict[Any, Any] = {
        symbol("x-opt-sequence-number"): int(sequence_number),
        symbol("x-opt-enqueue-sequence-number"): int(sequence_number),
        symbol("x-opt-enqueued-time"): timestamp(int(enqueued_time * 1000)),
        symbol("x-opt-message-state"): state,
    }
    if locked_until is not None:
        ann[symbol("x-opt-locked-until")] = timestamp(int(locked_until * 1000))
    if lock_token is not None:
        ann[symbol("x-opt-lock-token")] = lock_token
    if dead_letter_source is not None:
        ann[symbol("x-opt-deadletter-source")] = dead_letter_source
    return ann
