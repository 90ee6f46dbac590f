"""What the sync API and triggers do, without `azure.functions`: start a run (checkpoint + one message on the
`syncsteps` queue), run a queued step, report, rerun failed rows, and decide when reconciliation is due."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusMessage

from shared.bridge import bridge
from shared.initialsync import liveness
from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import SyncRunner, new_run
from shared.initialsync.store import Superseded
from shared.initialsync.wiring import get_runner

SYNC_QUEUE = "syncsteps"
log = logging.getLogger("sync.initial")


class RunNotFound(LookupError):
    pass


class NothingToRerun(ValueError):
    """rerun-failed on a finished plan: it wrote nothing, so it has no failed rows (the error log holds the rows of
    runs that write); rerunning it as a writing sync would write rows nobody asked for (the API answers 409)."""


STEP_SECONDS = float(os.environ.get("SYNC_STEP_SECONDS") or 240)  # well inside the 5-minute lock renewal
# The `syncsteps` queue's MaxDeliveryCount (infra/servicebus-entities.json): after that many failed deliveries the
# broker dead-letters the step, so the run is marked failed then, with the reason, instead of "running" for ever.
MAX_DELIVERIES = int(os.environ.get("SYNC_STEP_MAX_DELIVERIES") or 10)


async def _enqueue(run: RunState) -> None:
    # Message id = run id and step: a step queued twice (a retried start or hand-over) runs once.
    body = json.dumps({"run_id": run.run_id, "step": run.steps})
    await bridge().sender(SYNC_QUEUE).send(ServiceBusMessage(body, message_id=f"{run.run_id}:{run.steps}"))


async def start(mode: Mode, maps: Sequence[str] | None, only_failed: bool = False) -> RunState:
    """Checkpoint a new run and queue it; `ValueError` for an unknown map."""
    runner = get_runner()
    run = new_run(mode, runner.maps, maps, only_failed)
    await runner.runs.save(run)
    await _enqueue(run)
    return run


async def run_step(body: bytes, delivery_count: int = 1, runner: SyncRunner | None = None) -> None:
    """The queued step: run (or resume, after a crash or redeploy) the run it names, from its checkpoint. A step
    that keeps failing (throttled for ever, an app down, a bug) fails its run once its last delivery fails."""
    document = json.loads(body)
    run_id, step = str(document["run_id"]), document.get("step")
    runner = runner or get_runner()
    run = await runner.runs.get(run_id)
    if run is None:
        log.warning("sync step for unknown run %s: dropped", run_id)
        return
    if isinstance(step, int) and step < run.steps - 1:
        # A step of an older chain: still queued when the run was taken for lost and resumed (a resume skips a step
        # number), or redelivered after its successor had run. One chain of steps per run, so it is dropped. (The
        # step just before the current one is not: the host may have died after counting the next step and before
        # queuing it, and its redelivery is then all that carries the run on.)
        log.warning("sync step %d of run %s superseded by step %d: dropped", step, run_id, run.steps)
        return
    if run.state == "done" or (run.state == "failed" and run.failures >= MAX_DELIVERIES):
        return  # a redelivered step of a finished (or given up) run
    try:
        await _step(runner, run, delivery_count)
    except Superseded:
        log.warning("sync step %s of run %s: another step of the run saved meanwhile; this one stops", step, run_id)
        return  # completed, not redelivered: the step that saved carries the run on


async def _step(runner: SyncRunner, run: RunState, delivery_count: int) -> None:
    try:
        await runner.run(run, budget_seconds=STEP_SECONDS)
    except Superseded:
        raise
    except Exception as exc:
        run.failures += 1
        if max(run.failures, delivery_count) < MAX_DELIVERIES:
            await runner.runs.save(run)
            raise  # redelivered: the next delivery continues from the checkpoint
        give_up(run, f"a step failed {max(run.failures, delivery_count)} times; the last: {type(exc).__name__}: {exc}")
        await runner.runs.save(run)
        log.error("sync run %s failed: %s", run.run_id, run.message)
        return  # completed: nothing is left for the broker to redeliver
    run.failures = 0
    if run.state == "running":  # out of time: the next step continues from the checkpoint
        run.steps += 1
        await runner.runs.save(run)
        await _enqueue(run)
    elif run.state == "done":
        await runner.runs.save(run)


def give_up(run: RunState, reason: str) -> None:
    """The run and the map it was working on are failed, with the reason (`GET /api/sync/{run_id}` shows it); its
    step's redeliveries are dropped."""
    liveness.fail(run, reason)
    run.failures = max(run.failures, MAX_DELIVERIES)


async def report(run_id: str, runner: SyncRunner | None = None, lease: timedelta = liveness.STEP_LEASE) -> RunState:
    """The run as checkpointed; one whose step is gone (see `liveness`) is failed now, with the reason. Saved only
    if no step saved it meanwhile (ETag): a step that turns up after all carries on."""
    runner = runner or get_runner()
    run = await runner.runs.get(run_id)
    if run is None:
        raise RunNotFound(run_id)
    now = datetime.now(UTC)
    if liveness.abandoned(run, now, lease):
        liveness.abandon(run, now)
        if await runner.runs.save_if_unchanged(run):
            log.error("sync run %s failed: %s", run.run_id, run.message)
        else:
            return await report(run_id, runner, lease)
    return run


async def rerun_failed(
    run_id: str, runner: SyncRunner | None = None, enqueue: Callable[[RunState], Awaitable[None]] | None = None
) -> RunState:
    """A run failed as a whole (its step given up, or lost) or held (a map paused or invalid) is resumed from its
    checkpoint, under its own id — a plan as a plan; a finished run's failed rows are written by a new run over the
    same maps, writing only the rows in the error log. A finished plan has none: `NothingToRerun`."""
    run = await report(run_id, runner)
    if not liveness.resumable(run):
        if run.mode is Mode.PLAN:
            raise NothingToRerun(
                f"run {run_id} is a plan: it wrote nothing, so it has no failed rows to rerun — start a plan again"
                f' ({{"mode": "plan"}}), or a sync ({{"mode": "sync"}}) to write what it showed'
            )
        return await start(Mode.SYNC, run.maps, only_failed=True)
    liveness.resume(run)
    await (runner or get_runner()).runs.save(run)
    await (enqueue or _enqueue)(run)
    return run


def reconcile_due(last_started: datetime | None, now: datetime, every_minutes: float) -> bool:
    """Reconciliation runs every `every_minutes` (0: off), counted from the last one's start."""
    if every_minutes <= 0:
        return False
    return last_started is None or now - last_started >= timedelta(minutes=every_minutes) - timedelta(seconds=5)


async def reconcile_if_due(every_minutes: float, maps: Sequence[str] | None) -> RunState | None:
    if every_minutes <= 0:
        return None
    runner = get_runner()
    runs = [r for r in await runner.runs.runs() if r.mode is Mode.RECONCILE]
    last = max((r.created_at for r in runs), default=None)
    now = datetime.now(UTC)  # a run whose step is gone does not hold reconciliation back for ever
    if any(r.state in liveness.ACTIVE and not liveness.abandoned(r, now) for r in runs):
        return None
    if not reconcile_due(last, now, every_minutes):
        return None
    return await start(Mode.RECONCILE, maps)
