"""HTTP answers shared by the triggers: JSON bodies and RFC 9457 problem details."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import azure.functions as func


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json", headers=headers)


def problem(
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, object] | None = None,
) -> func.HttpResponse:
    """RFC 9457 problem details; `extensions`: members of the problem type's own (what was refused, …)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **(extensions or {})}
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/problem+json", headers=headers)


def wants_representation(req: func.HttpRequest) -> bool:
    return "return=representation" in (req.headers.get("prefer") or "").replace(" ", "").lower()
