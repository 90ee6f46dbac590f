"""`GET /api/console`: the operator's page. It carries no data: everything it shows comes from the JSON API, under
the same key or sign-in (a request without one gets 401 and an empty page never loads)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

from functions.operator import OPERATOR_LEVEL, signed_in

bp = func.Blueprint()  # type: ignore[no-untyped-call]
PAGE = Path(__file__).parent / "console" / "index.html"


@cache
def _page() -> bytes:
    return PAGE.read_bytes()


@bp.route(route="console", methods=["GET"], auth_level=OPERATOR_LEVEL)
async def console(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    headers = {
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "img-src 'self' data:; frame-ancestors 'none'",
    }
    return func.HttpResponse(_page(), status_code=200, mimetype="text/html", charset="utf-8", headers=headers)
