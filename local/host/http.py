"""Serves every HTTP trigger over real HTTP at /api/<route>, converting to and from func.HttpRequest/HttpResponse."""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import azure.functions as func
from aiohttp import web

from local.host.functions import HttpTriggerSpec
from local.host.invoke import invoke
from local.host.keys import is_authorized, presented_key
from local.host.routes import RouteTemplate, compile_route

log = logging.getLogger("local.host")


@dataclass(frozen=True)
class _Route:
    spec: HttpTriggerSpec
    template: RouteTemplate


def problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/problem+json", headers=headers
    )


class HttpTriggerServer:
    def __init__(self, specs: list[HttpTriggerSpec], keys: Mapping[str, str], route_prefix: str = "api") -> None:
        self._routes = sorted(
            (_Route(s, compile_route(s.route)) for s in specs), key=lambda r: -r.template.literal_length
        )
        self._keys = keys
        self._prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""

    def routes(self) -> list[tuple[str, str]]:
        return [(r.spec.name, f"{self._prefix}/{r.spec.route}") for r in self._routes]

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self._prefix:
            if not (path == self._prefix or path.startswith(self._prefix + "/")):
                return problem(404, "Not Found", f"no function serves {path}")
            path = path[len(self._prefix) :]
        matched = [(r, p) for r in self._routes if (p := r.template.match(path)) is not None]
        if not matched:
            return problem(404, "Not Found", f"no function serves {request.path}")
        allowed = [(r, p) for r, p in matched if not r.spec.methods or request.method in r.spec.methods]
        if not allowed:
            methods = sorted({m for r, _ in matched for m in r.spec.methods})
            return problem(
                405, "Method Not Allowed", f"{request.method} is not allowed here", {"Allow": ", ".join(methods)}
            )
        route, params = allowed[0]
        spec = route.spec
        query = {k: v for k, v in request.query.items()}
        headers = {k.lower(): v for k, v in request.headers.items()}
        if not is_authorized(spec.auth_level, spec.name, presented_key(headers, query), self._keys):
            log.info("invocation function=%s trigger=http status=401 duration_ms=0 invocation_id=-", spec.name)
            return problem(401, "Unauthorized", "a valid function key is required (x-functions-key header or code=)")
        body = await request.read()
        req = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=dict(request.headers.items()),
            params=query,
            route_params=params,
            body=body,
        )
        started = time.perf_counter()
        try:
            result, invocation_id, duration = await invoke(
                spec.handler, spec.name, spec.arg_name, req, spec.wants_context
            )
        except Exception:
            duration = (time.perf_counter() - started) * 1000
            invocation_id = str(uuid.uuid4())
            log.error(
                "invocation function=%s trigger=http status=500 duration_ms=%.1f invocation_id=%s failed:\n%s",
                spec.name,
                duration,
                invocation_id,
                traceback.format_exc(),
            )
            return problem(500, "Internal Server Error", f"function {spec.name} failed (invocation {invocation_id})")
        response = to_web_response(result)
        log.info(
            "invocation function=%s trigger=http status=%d duration_ms=%.1f invocation_id=%s",
            spec.name,
            response.status,
            duration,
            invocation_id,
        )
        return response


def to_web_response(result: object) -> web.Response:
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        return problem(500, "Internal Server Error", f"function returned {type(result).__name__}, not an HttpResponse")
    headers = {k: v for k, v in result.headers.items()}
    if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
        textual = result.mimetype.startswith("text/") or result.mimetype.endswith(("json", "xml"))
        headers["Content-Type"] = (
            f"{result.mimetype}; charset={result.charset}" if textual and result.charset else result.mimetype
        )
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
