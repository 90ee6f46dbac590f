"""Initial sync and reconciliation: start a run (202 + Location), report it, rerun its failed rows, read drift; the
queued steps; the reconciliation timer. All with the master key."""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func

from functions.http import answers_outage, json_response, problem
from shared.initialsync import service
from shared.initialsync.model import Mode
from shared.initialsync.schedule import reconcile_schedule
from shared.initialsync.wiring import get_runner
from shared.maps.loader import MapProblems

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)
_REPORTED: set[str] = set()  # schedule problems logged already


@bp.route(route="maps/{name}/sync", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@answers_outage
async def start_sync(req: func.HttpRequest) -> func.HttpResponse:
    """Body (optional): `{"mode": "sync" | "plan" | "reconcile", "maps": [...]}`; the maps run in dependency order."""
    name = req.route_params.get("name", "")
    try:
        body = json.loads(req.get_body() or b"{}")
    except ValueError:
        return problem(400, "Bad Request", 'the body must be JSON: {"mode": "sync" | "plan", "maps": [...]}')
    if not isinstance(body, dict):
        return problem(400, "Bad Request", "the body must be a JSON object")
    try:
        mode = Mode(body.get("mode", "sync"))
    except ValueError:
        return problem(400, "Bad Request", f"unknown mode {body.get('mode')!r}: use sync, plan or reconcile")
    maps = body.get("maps") or [name]
    if not isinstance(maps, list) or not all(isinstance(m, str) for m in maps):
        return problem(400, "Bad Request", "maps must be a list of map names")
    if name not in maps:
        maps = [name, *maps]
    try:
        run = await service.start(mode, maps)
    except MapProblems:
        raise  # the deployment's maps, not the request: 503 (`answers_outage`)
    except ValueError as exc:
        return problem(404, "Not Found", str(exc))
    location = f"/api/sync/{run.run_id}"
    return json_response({"run_id": run.run_id, "location": location} | run.report(), 202, {"Location": location})


@bp.route(route="sync/{run_id}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
@answers_outage
async def sync_status(req: func.HttpRequest) -> func.HttpResponse:
    try:
        run = await service.report(req.route_params.get("run_id", ""))
    except service.RunNotFound:
        return problem(404, "Not Found", "no such sync run")
    return json_response(run.report())


@bp.route(route="sync/{run_id}/rerun-failed", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
@answers_outage
async def sync_rerun_failed(req: func.HttpRequest) -> func.HttpResponse:
    try:
        run = await service.rerun_failed(req.route_params.get("run_id", ""))
    except service.RunNotFound:
        return problem(404, "Not Found", "no such sync run")
    except service.NothingToRerun as exc:  # a finished plan: the run's state, not the request, is what conflicts
        return problem(409, "Conflict", str(exc))
    location = f"/api/sync/{run.run_id}"
    return json_response({"run_id": run.run_id, "location": location} | run.report(), 202, {"Location": location})


@bp.route(route="drift", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
@answers_outage
async def list_drift(req: func.HttpRequest) -> func.HttpResponse:
    found = await get_runner().runs.drift(req.params.get("map"))
    return json_response({"drift": [d.model_dump(mode="json") for d in found]})


@bp.service_bus_queue_trigger(arg_name="message", queue_name=service.SYNC_QUEUE, connection="ServiceBusConnection")
async def sync_step(message: func.ServiceBusMessage) -> None:
    await service.run_step(message.get_body(), message.delivery_count or 1)


@bp.timer_trigger(schedule="0 * * * * *", arg_name="timer", run_on_startup=False)
async def reconcile(timer: func.TimerRequest) -> None:
    """Ticks every minute; a reconciliation starts when `RECONCILE_INTERVAL_MINUTES` (0 or unset: off) have passed
    since the last one began, over `RECONCILE_MAPS` (comma-separated; unset: every enabled map)."""
    schedule = reconcile_schedule(
        os.environ.get("RECONCILE_INTERVAL_MINUTES"), os.environ.get("RECONCILE_MAPS"), get_runner().maps.maps
    )
    for reason in schedule.problems:
        if reason not in _REPORTED:  # once per process, not every minute
            _REPORTED.add(reason)
            log.error("reconciliation: %s", reason)
    run = await service.reconcile_if_due(schedule.every_minutes, schedule.maps)
    if run is not None:
        log.info("reconciliation %s started over %s", run.run_id, ", ".join(run.maps))
