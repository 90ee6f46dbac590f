"""Opaque, route-safe ids for error and conflict entries, and the event id a replay travels under."""

from __future__ import annotations

import base64
import binascii

REPLAY_MARK = "~replay"


class UnknownId(ValueError):
    """Not an id this API handed out."""


def entry_id(partition: str, row: str) -> str:
    return base64.urlsafe_b64encode(f"{partition}\x1f{row}".encode()).decode().rstrip("=")


def parse_entry_id(text: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise UnknownId(f"{text!r} is not an entry id") from None
    partition, sep, row = raw.partition("\x1f")
    if not sep or not partition or not row:
        raise UnknownId(f"{text!r} is not an entry id")
    return partition, row


def replay_event_id(original: str, attempt: int | str) -> str:
    """A replay is the original change under a new event id (duplicate detection would drop the original's), marked
    so that its outcome is written back onto the original's error entry, whichever process applies it."""
    return f"{original_event_id(original)}{REPLAY_MARK}{attempt}"


def original_event_id(event_id: str) -> str:
    return event_id.split(REPLAY_MARK, 1)[0]


def is_replay(event_id: str) -> bool:
    return REPLAY_MARK in event_id
