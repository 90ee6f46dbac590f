"""Whether a run's steps are still alive, pure: a run is carried by one queued step at a time, and a step that is
lost — its host crashed on the `syncsteps` queue's last delivery (the broker dead-letters it), the message was
deleted, or the run was checkpointed and never queued — leaves nothing to finish the run. Every step saves the run
as it starts, after reading and after every chunk, and no step outlives its message lock (5 minutes of renewal,
host.json `maxAutoLockRenewalDuration`), so a run in `queued`/`running` whose checkpoint is older than a lease of
several locks has no step left: it is failed with the reason, and `rerun-failed` resumes it from its checkpoint."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from shared.initialsync.model import RunState

# Five minutes of lock renewal twice over, the queue's 30-second lock and its redelivery, and room for a backlog.
STEP_LEASE = timedelta(seconds=float(os.environ.get("SYNC_STEP_LEASE_SECONDS") or 900))
ACTIVE = ("queued", "running")


def abandoned(run: RunState, now: datetime, lease: timedelta = STEP_LEASE) -> bool:
    """No step has checkpointed the unfinished run for longer than the lease: its step is gone."""
    return run.state in ACTIVE and now - run.updated_at > lease


def fail(run: RunState, reason: str) -> None:
    """The run and the map it was working on are failed, with the reason (`GET /api/sync/{run_id}` shows it)."""
    run.state, run.message = "failed", reason
    current = next((p for p in run.progress.values() if p.state not in ("done", "pending", "held")), None)
    current = current or next((p for p in run.progress.values() if p.state not in ("done", "held")), None)
    if current is not None:
        current.state, current.message = "failed", reason


def abandon(run: RunState, now: datetime) -> None:
    """Fail a run whose step is gone, saying when it was last seen and how to go on."""
    seen = run.updated_at.isoformat(timespec="seconds")
    fail(
        run,
        f"no step has run since {seen} ({int((now - run.updated_at).total_seconds())} s ago): its queued step was"
        " lost (a host stopped on its last delivery, or the message was dead-lettered or deleted); POST"
        f" /api/sync/{run.run_id}/rerun-failed resumes it from its checkpoint",
    )


def resumable(run: RunState) -> bool:
    """A failed run as a whole (given up or abandoned, as opposed to a finished run with failed rows), or one that
    held maps paused or invalid (nothing written into them)."""
    return run.state in ("failed", "held")


def resume(run: RunState) -> None:
    """Back in the queue from its checkpoint: maps done stay done, the one it stopped in continues at its cursor."""
    # A new chain of steps: its number skips one, so a step of the old chain still queued is dropped when it comes
    # (`service.run_step`); a new message id, not a duplicate.
    run.state, run.failures, run.steps = "queued", 0, run.steps + 2
    run.message = "resumed from its checkpoint"
    for p in run.progress.values():
        if p.state in ("failed", "held"):
            p.state, p.message = "pending", ""
