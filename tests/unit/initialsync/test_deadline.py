"""When a sync step stops starting chunks: never so late that its message lock (renewed for 5 minutes at most,
host.json `maxAutoLockRenewalDuration`) runs out while it still writes, and the broker hands a second copy of the
step to another instance."""

from __future__ import annotations

import json
from pathlib import Path

from shared.initialsync.run import STEP_LIMIT, write_deadline


def test_a_quick_step_stops_at_its_budget() -> None:
    assert write_deadline(started=1000.0, now=1010.0, budget=240.0) == 1240.0


def test_a_step_whose_reading_spent_its_budget_writes_half_a_budget_more() -> None:
    # A large map would otherwise advance one chunk per step, re-reading both apps each time.
    assert write_deadline(started=0.0, now=100.0, budget=120.0, limit=270.0) == 160.0


def test_a_step_never_writes_past_its_limit_however_long_it_read() -> None:
    # 150 s reading and planning + half of 240 would be 270 s; 200 s would be 320 s: past the lock.
    assert write_deadline(started=0.0, now=200.0, budget=240.0, limit=270.0) == 270.0
    assert write_deadline(started=0.0, now=10.0, budget=400.0, limit=270.0) == 270.0


def test_the_default_limit_leaves_room_for_a_chunk_inside_the_lock_renewal() -> None:
    host = json.loads((Path(__file__).parents[3] / "host.json").read_text())
    h, m, s = (int(p) for p in host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"].split(":"))
    assert STEP_LIMIT <= h * 3600 + m * 60 + s - 30
