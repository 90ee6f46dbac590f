"""Operational endpoints: health (anonymous), and, for operators (`functions.operator`), map state (pause/resume)
and the maps' check against both apps' metadata. The error log, conflicts and the console's actions: `ops.py`."""

from __future__ import annotations

import json

import azure.functions as func

from functions.http import answers_outage, json_response, problem
from functions.operator import OPERATOR_LEVEL, signed_in
from shared.bridge import bridge
from shared.maps.metadata import MetadataUnavailable
from shared.probes import bridge_health

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await bridge_health()
    return func.HttpResponse(report.model_dump_json(), status_code=report.http_status, mimetype="application/json")


@bp.route(route="maps", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def list_maps(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    return json_response({"maps": await bridge().control.states()})


@bp.route(route="maps/check", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def check_maps(req: func.HttpRequest) -> func.HttpResponse:
    """Check every map against both apps' metadata now; failing maps are held, invalid maps that pass released."""
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    try:
        report = await bridge().control.check()
    except MetadataUnavailable as exc:
        return problem(503, "Service Unavailable", f"the apps' metadata could not be read: {exc}")
    return json_response(report)


@bp.route(route="maps/{name}/{action}", methods=["POST"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def change_map_state(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    name, action = req.route_params.get("name", ""), req.route_params.get("action", "")
    control = bridge().control
    if name not in control.maps.maps:
        return problem(404, "Not Found", f"no map named {name!r}")
    if action == "pause":
        reason = req.params.get("reason") or _body_reason(req)
        return json_response(await control.pause(name, f"paused by {who.name}" + (f": {reason}" if reason else "")))
    if action == "resume":
        try:
            resumed = await control.resume(name)  # an invalid map is checked again first
        except MetadataUnavailable as exc:
            return problem(503, "Service Unavailable", f"the apps' metadata could not be read: {exc}")
        if resumed.get("state") == "running":  # who resumed it, as who paused it
            await control.ledger.set_map_state(name, "running", f"resumed by {who.name}")
            resumed["reason"] = f"resumed by {who.name}"
        return json_response(resumed)
    return problem(404, "Not Found", f"unknown action {action!r}: use pause or resume")


def _body_reason(req: func.HttpRequest) -> str:
    try:
        body = json.loads(req.get_body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(body.get("reason") or "") if isinstance(body, dict) else ""
