"""The dev host's quiet console: one short human line per change applied, nothing for the rest of INFO."""

from __future__ import annotations

import json
import logging

import pytest

from local.host.logs import APPLY_LOGGER, _QuietFilter, apply_line


def _apply(**fields: object) -> str:
    event = {"event": "apply", "correlation_id": "c", "event_id": "e", "map": "customers", "outcome": "applied",
             "detail": "", "writes": 1, "source": "fno", "entity": "CustomersV3", "operation": "update",
             "latency_ms": 180.4}  # fmt: skip
    return json.dumps(event | fields)


def test_an_applied_change_is_one_short_line() -> None:
    assert (
        apply_line(_apply()) == "applied customers fno→dataverse CustomersV3 update, 1 write, 180 ms after the change"
    )


def test_the_rows_key_is_shown_when_the_line_carries_it() -> None:
    line = apply_line(_apply(row="USMF/C-1001"))
    assert line == "applied customers USMF/C-1001 fno→dataverse CustomersV3 update, 1 write, 180 ms after the change"


def test_a_conflict_says_who_won() -> None:
    line = apply_line(_apply(outcome="conflict", source="dataverse", entity="account", writes=2,
                             detail="conflict on name, fno won"))  # fmt: skip
    assert line == "conflict customers dataverse→fno account update, 2 writes, 180 ms after the change: " + (
        "conflict on name, fno won"
    )


@pytest.mark.parametrize("outcome", ["skipped-echo", "skipped-stale", "skipped-filtered", "skipped"])
def test_outcomes_that_change_nothing_are_left_out(outcome: str) -> None:
    assert apply_line(_apply(outcome=outcome)) is None


def test_other_messages_pass_through_unchanged() -> None:
    assert apply_line("concurrent change on customers; deciding again") == (
        "concurrent change on customers; deciding again"
    )
    assert apply_line('{"event": "alert", "map": "customers"}') == '{"event": "alert", "map": "customers"}'


def _record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_quiet_keeps_warnings_and_apply_lines_only() -> None:
    quiet = _QuietFilter()
    assert not quiet.filter(_record("httpx", logging.INFO, "HTTP Request: GET http://x"))
    assert not quiet.filter(_record("local.host", logging.INFO, "invocation function=health trigger=http"))
    assert quiet.filter(_record("local.host", logging.WARNING, "receiver failed; reconnecting"))
    assert quiet.filter(_record("asyncio", logging.ERROR, "Unclosed client session"))
    assert not quiet.filter(_record(APPLY_LOGGER, logging.INFO, _apply(outcome="skipped-echo")))
    applied = _record(APPLY_LOGGER, logging.INFO, _apply())
    assert quiet.filter(applied)
    assert applied.getMessage().startswith("applied customers fno→dataverse")
