"""What the sync API and triggers do, without `azure.functions`: start a run (checkpoint + one message on the
`syncsteps` queue), run a queued step, report, rerun failed rows, and decide when reconciliation is due."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from azure.servicebus import ServiceBusMessage

from shared.bridge import bridge
from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import new_run
from shared.initialsync.wiring import get_runner

SYNC_QUEUE = "syncsteps"
log = logging.getLogger("sync.initial")


class RunNotFound(LookupError):
    pass


STEP_SECONDS = float(os.environ.get("SYNC_STEP_SECONDS") or 240)  # well inside the 5-minute lock renewal


async def _enqueue(run: RunState) -> None:
    # Message id = run id and step: a step queued twice (a retried start or hand-over) runs once.
    message = ServiceBusMessage(json.dumps({"run_id": run.run_id}), message_id=f"{run.run_id}:{run.steps}")
    async with bridge().clients.servicebus.get_queue_sender(SYNC_QUEUE) as sender:
        await sender.send_messages(message)


async def start(mode: Mode, maps: Sequence[str] | None, only_failed: bool = False) -> RunState:
    """Checkpoint a new run and queue it; `ValueError` for an unknown map."""
    runner = get_runner()
    run = new_run(mode, runner.maps, maps, only_failed)
    await runner.runs.save(run)
    await _enqueue(run)
    return run


async def run_step(body: bytes) -> None:
    """The queued step: run (or resume, after a crash or redeploy) the run it names, from its checkpoint."""
    run_id = str(json.loads(body)["run_id"])
    runner = get_runner()
    run = await runner.runs.get(run_id)
    if run is None:
        log.warning("sync step for unknown run %s: dropped", run_id)
        return
    if run.state == "done":
        return  # a redelivered step of a finished run
    await runner.run(run, budget_seconds=STEP_SECONDS)
    if run.state == "running":  # out of time: the next step continues from the checkpoint
        run.steps += 1
        await runner.runs.save(run)
        await _enqueue(run)


async def report(run_id: str) -> RunState:
    run = await get_runner().runs.get(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


async def rerun_failed(run_id: str) -> RunState:
    """A new run over the same maps, writing only the rows in the error log."""
    run = await report(run_id)
    return await start(Mode.SYNC, run.maps, only_failed=True)


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
    if any(r.state in ("queued", "running") for r in runs) or not reconcile_due(last, datetime.now(UTC), every_minutes):
        return None
    return await start(Mode.RECONCILE, maps)
