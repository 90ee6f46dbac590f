"""A run whose step is gone (its host stopped on the `syncsteps` queue's last delivery, the message dead-lettered
or deleted) is noticed by its checkpoint going stale, failed with the reason, and resumable from its checkpoint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.initialsync import liveness
from shared.initialsync.model import MapProgress, Mode, RunState

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _run(state: str, seconds_ago: float) -> RunState:
    run = RunState(run_id="r1", mode=Mode.SYNC, maps=["companies", "customers"], state=state)
    run.progress = {
        "companies": MapProgress(map="companies", state="done"),
        "customers": MapProgress(map="customers", state="writing", cursor="k=42", processed=42),
    }
    run.updated_at = NOW - timedelta(seconds=seconds_ago)
    return run


def test_a_run_checkpointed_within_the_lease_is_alive() -> None:
    lease = timedelta(minutes=15)
    assert not liveness.abandoned(_run("running", 14 * 60), NOW, lease)
    assert not liveness.abandoned(_run("queued", 60), NOW, lease)


def test_a_running_or_queued_run_silent_past_the_lease_is_abandoned() -> None:
    lease = timedelta(minutes=15)
    assert liveness.abandoned(_run("running", 16 * 60), NOW, lease)
    assert liveness.abandoned(_run("queued", 16 * 60), NOW, lease)  # checkpointed, never queued (or lost queued)


def test_a_finished_run_is_never_abandoned() -> None:
    for state in ("done", "failed"):
        assert not liveness.abandoned(_run(state, 86_400), NOW, timedelta(minutes=15))


def test_an_abandoned_run_fails_with_the_reason_and_how_to_go_on() -> None:
    run = _run("running", 3600)
    liveness.abandon(run, NOW)
    assert run.state == "failed" and "no step has run since" in run.message and "3600 s ago" in run.message
    assert "/api/sync/r1/rerun-failed" in run.message
    assert run.progress["customers"].state == "failed" and run.progress["customers"].message == run.message
    assert run.progress["companies"].state == "done"  # a map already done stays done


def test_a_resumed_run_continues_from_its_checkpoint_as_a_new_step() -> None:
    run = _run("running", 3600)
    run.steps, run.failures = 3, 10
    liveness.abandon(run, NOW)
    assert liveness.resumable(run)
    liveness.resume(run)
    assert run.state == "queued" and run.failures == 0 and run.steps == 5  # a new chain: a step number skipped
    customers = run.progress["customers"]
    assert customers.state == "pending" and customers.cursor == "k=42" and customers.processed == 42
    assert run.progress["companies"].state == "done"


def test_the_lease_outlasts_a_step_and_its_redelivery() -> None:
    # A live step never goes silent longer than its message lock's renewal (host.json) plus the queue's lock.
    root = Path(__file__).parents[3]
    host = json.loads((root / "host.json").read_text())
    h, m, s = (int(p) for p in host["extensions"]["serviceBus"]["maxAutoLockRenewalDuration"].split(":"))
    queues = json.loads((root / "infra" / "servicebus-entities.json").read_text())["UserConfig"]["Namespaces"][0]
    steps = next(q for q in queues["Queues"] if q["Name"] == "syncsteps")["Properties"]
    lock = timedelta(seconds=int(steps["LockDuration"].removeprefix("PT").removesuffix("S")))
    assert liveness.STEP_LEASE >= 2 * timedelta(hours=h, minutes=m, seconds=s) + lock
