"""Operational endpoints: health (anonymous, for load balancers and `make run`)."""

from __future__ import annotations

import azure.functions as func

from shared.probes import bridge_health

bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await bridge_health()
    return func.HttpResponse(report.model_dump_json(), status_code=report.http_status, mimetype="application/json")
