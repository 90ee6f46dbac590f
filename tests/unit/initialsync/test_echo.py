"""A sync run's own Dataverse writes come back as webhooks tagged `bridge:sync:<run>`: ingest acknowledges them
as ignored (no queued message, no apply), as it does live apply's own echoes (`bridge:<event>`)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events.model import ChangeEvent, Operation, Side
from shared.ingest.wiring import mapped_entities
from shared.initialsync.io import TAG_PREFIX
from shared.maps.loader import load_maps

KEEP = mapped_entities(load_maps())


def change(tag: str | None) -> ChangeEvent:
    return ChangeEvent(event_id="e", source=Side.DATAVERSE, entity="account", operation=Operation.CREATE,
                       row_id="8c1f1a4e-0000-0000-0000-000000000001", occurred_at=datetime.now(UTC),
                       write_tag=tag)  # fmt: skip


def test_a_sync_runs_own_write_is_dropped_at_ingest() -> None:
    reason = KEEP(change(f"{TAG_PREFIX}sync:0123456789abcdef"))
    assert reason is not None and "own write" in reason


def test_other_changes_are_kept() -> None:
    assert KEEP(change(None)) is None
    assert KEEP(change("someone-else")) is None
