from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from shared.bus.lanes import session_for
from shared.events.model import ChangeEvent
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


def _event(row_id: str, source: str = "fno", entity: str = "CustomersV3") -> ChangeEvent:
    return ChangeEvent.model_validate(
        {
            "event_id": f"e-{row_id}",
            "source": source,
            "entity": entity,
            "operation": "update",
            "row_id": row_id,
            "occurred_at": datetime(2026, 11, 22, tzinfo=UTC),
        }
    )


def test_a_row_always_takes_the_same_lane() -> None:
    assert session_for(_event("USMF-C1"), 16) == session_for(_event("USMF-C1"), 16)
    assert session_for(_event("USMF-C1"), 16).startswith("lane-")


def test_rows_spread_over_every_lane() -> None:
    lanes = Counter(session_for(_event(f"USMF-C{i}"), 16) for i in range(2000))
    assert len(lanes) == 16 and min(lanes.values()) > 60


def test_zero_lanes_means_a_session_per_row_within_service_bus_length() -> None:
    assert session_for(_event("USMF-C1"), 0) == "fno:customersv3:usmf-c1"
    assert len(session_for(_event("x" * 300), 0)) <= 128


def test_the_default_lanes_match_the_hosts_concurrent_sessions() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert Settings().session_lanes == host["extensions"]["serviceBus"]["maxConcurrentSessions"]
