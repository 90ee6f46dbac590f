"""The dev host runs timer triggers on their NCRONTAB schedule (a `%SETTING%` schedule read from the settings), as
the Functions host does."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

from tests import stack

ROOT = Path(__file__).parents[2]


def test_a_timer_fires_on_its_schedule_and_a_setting_names_a_schedule(tmp_path: Path) -> None:
    record = tmp_path / "record.jsonl"
    record.touch()
    (tmp_path / "host.json").write_text((ROOT / "host.json").read_text())
    env = {"RECORD_FILE": str(record), "NEVER_SCHEDULE": "0 0 0 1 1 *"}  # midnight on 1 January
    with stack.dev_host(env, app="tests.fixtures.timer_app:app", root=tmp_path):
        deadline = time.monotonic() + 15
        ticks: list[dict[str, object]] = []
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
            ticks = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    assert len(ticks) >= 3 and {t["function"] for t in ticks} == {"every_second"}
    moments = [float(t["at"]) for t in ticks]  # type: ignore[arg-type]
    assert all(0.5 < b - a < 1.6 for a, b in itertools.pairwise(moments))
