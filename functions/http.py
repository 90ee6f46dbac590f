"""HTTP answers shared by the triggers: JSON bodies and RFC 9457 problem details."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.servicebus.exceptions import (
    OperationTimeoutError,
    ServiceBusCommunicationError,
    ServiceBusConnectionError,
    ServiceBusServerBusyError,
)

from shared.bus.publisher import BusUnavailable
from shared.ledger.wire import TableRequestFailed
from shared.maps.loader import MapProblems

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = "5"
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
Handler = Callable[[func.HttpRequest], Awaitable[func.HttpResponse]]


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


def is_outage(exc: BaseException) -> bool:
    """Table Storage or Service Bus out of reach or busy — after the SDKs' own retries: the caller should retry."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError | BusUnavailable):
        return True  # no connection, or no answer
    if isinstance(exc, ServiceBusConnectionError | ServiceBusCommunicationError | OperationTimeoutError):
        return True
    if isinstance(exc, ServiceBusServerBusyError):
        return True
    if isinstance(exc, HttpResponseError):
        return exc.status_code in TRANSIENT_STATUSES
    return isinstance(exc, TableRequestFailed) and exc.status in TRANSIENT_STATUSES


def answers_outage(handler: Handler) -> Handler:
    """A storage or bus outage is answered 503 problem+json with `Retry-After`, not a 500 with the host's stack
    trace in its log: nothing was accepted, and the request can be made again as it is. So is a map set that does
    not load (the deployment's own problem, named; `GET /api/health` names it too)."""

    @functools.wraps(handler)
    async def answer(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return await handler(req)
        except MapProblems as exc:
            log.error("%s: the table maps do not load: %s", handler.__name__, exc)
            problems = "; ".join(str(p) for p in exc.problems)
            return problem(503, "Service Unavailable", f"the table maps do not load (fix MAPS_DIR's maps): {problems}")
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("%s: storage or bus unavailable: %s: %s", handler.__name__, type(exc).__name__, exc)
            return problem(
                503,
                "Service Unavailable",
                f"Table Storage or Service Bus could not be reached ({type(exc).__name__}); retry later",
                {"Retry-After": RETRY_AFTER_SECONDS},
            )

    return answer
