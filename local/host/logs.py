"""The dev host's console: everything (`verbose`, what `python -m local.host` shows by default) or only what a person
watching `make run` needs (`quiet`): every warning and error, and one short line per change the app applied.

The app logs each apply outcome as one JSON line (`{"event": "apply", …}`, for Application Insights); in quiet mode
that line is rendered for people instead, e.g. `applied customers fno→dataverse CustomersV3 update, 1 write, 180 ms
after the change`. Outcomes that change nothing (echoes of our own writes, stale or filtered events) are left out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
APPLY_LOGGER = "sync.apply"  # the app's logger for apply outcomes (shared/sync/service.py)
SHOWN_OUTCOMES = {"applied", "conflict", "error", "held", "deferred"}
SIDES = {"fno": "dataverse", "dataverse": "fno"}


def apply_line(message: str) -> str | None:
    """The human line for one apply JSON line; None to leave it out, the message itself if it is not one."""
    try:
        event: Any = json.loads(message)
    except ValueError:
        return message
    if not isinstance(event, dict) or event.get("event") != "apply":
        return message
    outcome = str(event.get("outcome", "?"))
    if outcome not in SHOWN_OUTCOMES:
        return None
    source = str(event.get("source", "?"))
    writes = event.get("writes") or 0
    row = f" {event['row']}" if isinstance(event.get("row"), str) else ""  # the row's key, when the line has it
    parts = [
        f"{outcome} {event.get('map', '?')}{row} {source}→{SIDES.get(source, '?')} {event.get('entity', '?')} "
        f"{event.get('operation', '?')}"
    ]
    if outcome in ("applied", "conflict"):
        parts.append(f"{writes} write{'' if writes == 1 else 's'}")
    latency = event.get("latency_ms")
    if isinstance(latency, int | float):
        parts.append(f"{latency:.0f} ms after the change")
    detail = str(event.get("detail") or "")
    return ", ".join(parts) + (f": {detail}" if detail else "")


class _QuietFilter(logging.Filter):
    """Warnings and errors from anyone; from the app's apply logger, the outcomes worth a line, rendered."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name != APPLY_LOGGER:
            return False
        line = apply_line(record.getMessage())
        if line is None:
            return False
        record.msg, record.args = line, None
        return True


class _QuietFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        self._problems = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return self._problems.format(record) if record.levelno >= logging.WARNING else super().format(record)


def configure(quiet: bool) -> None:
    """Root logging for the dev host process."""
    handler = logging.StreamHandler()
    if quiet:
        handler.setFormatter(_QuietFormatter())
        handler.addFilter(_QuietFilter())
    else:
        handler.setFormatter(logging.Formatter(FORMAT))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO
    logging.getLogger("azure.servicebus._pyamqp").setLevel(logging.ERROR)  # link-level chatter on refused attaches
    if quiet:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request the connectors make
