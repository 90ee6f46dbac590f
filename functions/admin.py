"""Operational endpoints: health (anonymous), and, with the master key, map state (pause/resume), the maps' check
against both apps' metadata, the conflicts and the error log."""

from __future__ import annotations

import azure.functions as func

from functions.http import json_response, problem
from shared.bridge import bridge
from shared.maps.metadata import MetadataUnavailable
from shared.probes import bridge_health

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await bridge_health()
    return func.HttpResponse(report.model_dump_json(), status_code=report.http_status, mimetype="application/json")


@bp.route(route="maps", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def list_maps(req: func.HttpRequest) -> func.HttpResponse:
    return json_response({"maps": await bridge().control.states()})


@bp.route(route="maps/check", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def check_maps(req: func.HttpRequest) -> func.HttpResponse:
    """Check every map against both apps' metadata now; failing maps are held, invalid maps that pass released."""
    try:
        report = await bridge().control.check()
    except MetadataUnavailable as exc:
        return problem(503, "Service Unavailable", f"the apps' metadata could not be read: {exc}")
    return json_response(report)


@bp.route(route="maps/{name}/{action}", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def change_map_state(req: func.HttpRequest) -> func.HttpResponse:
    name, action = req.route_params.get("name", ""), req.route_params.get("action", "")
    control = bridge().control
    if name not in control.maps.maps:
        return problem(404, "Not Found", f"no map named {name!r}")
    if action == "pause":
        return json_response(await control.pause(name, req.params.get("reason", "paused by an operator")))
    if action == "resume":
        return json_response(await control.resume(name))
    return problem(404, "Not Found", f"unknown action {action!r}: use pause or resume")


@bp.route(route="conflicts", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def list_conflicts(req: func.HttpRequest) -> func.HttpResponse:
    found = await bridge().control.ledger.conflicts(req.params.get("map"))
    return json_response({"conflicts": [c.model_dump(mode="json") for c in found]})


@bp.route(route="errors", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def list_errors(req: func.HttpRequest) -> func.HttpResponse:
    found = await bridge().control.ledger.errors(req.params.get("map"))
    return json_response({"errors": [e.model_dump(mode="json") for e in found]})
