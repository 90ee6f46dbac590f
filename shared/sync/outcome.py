"""What apply answers: outcomes, and the two ways a change can fail (retry later, or for good)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from shared.connectors.errors import ConnectorError, ValidationFailed
from shared.events.model import ChangeEvent
from shared.maps.model import TableMap

Scheduler = Callable[[ChangeEvent, float, int], Awaitable[None]]  # (change, after seconds, attempt)


class Retry(Exception):
    """Try this change again later (re-scheduled, never slept on inside the session)."""

    def __init__(self, after: float, reason: str) -> None:
        super().__init__(reason)
        self.after = after
        self.reason = reason


class PermanentFailure(Exception):
    """The change cannot be applied as it is; recorded in the error log, and the message is dead-lettered."""


@dataclass
class Outcome:
    map: str
    outcome: (
        str  # applied | skipped-stale | skipped-echo | skipped-filtered | skipped | conflict | held | deferred | error
    )
    detail: str = ""
    writes: int = 0


@dataclass
class AlertRule:
    errors: int = 5
    minutes: float = 5.0


@dataclass
class Message:
    """A queued change as the trigger hands it over."""

    event: ChangeEvent
    delivery_count: int = 1
    attempt: int = 0


def invalid(m: TableMap, message: str) -> ConnectorError:
    """A change the map cannot apply as it is (error-logged, not retried)."""
    return ValidationFailed(message, request=f"map {m.name}")
