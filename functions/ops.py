"""The operator's JSON API (the console is its client): status, errors and conflicts with filters and pages,
replay, dismiss, conflict resolution, the dead-letter queue. Errors answer problem+json; every action records the
signed-in operator."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.servicebus.exceptions import ServiceBusError
from pydantic import ValidationError

from functions.http import answers_outage, json_response, problem
from functions.operator import OPERATOR_LEVEL, signed_in
from shared.bridge import bridge
from shared.ops.actions import ErrorActions, InvalidAction, NotFoundError, Resolution
from shared.ops.deadletters import DeadLetterNotFound, DeadLetters
from shared.ops.ids import UnknownId, parse_entry_id
from shared.ops.resolve import ConflictActions
from shared.ops.status import status
from shared.ops.store import CONFLICT_STATUSES, ERROR_STATUSES, Filter
from shared.ops.wiring import get_store, get_waiting, resolved_change

bp = func.Blueprint()  # type: ignore[no-untyped-call]


class BadRequest(ValueError):
    pass


def _control() -> Any:
    return bridge().control


def _time(req: func.HttpRequest, name: str) -> datetime | None:
    text = req.params.get(name)
    if not text:
        return None
    try:
        return datetime.fromisoformat(
            text.replace("Z", "+00:00").replace(" ", "+")
        )  # an unescaped + arrives as a space
    except ValueError:
        raise BadRequest(f"{name}: {text!r} is not an ISO 8601 date-time") from None


def _int(req: func.HttpRequest, name: str, default: int) -> int:
    text = req.params.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise BadRequest(f"{name}: {text!r} is not a positive whole number")
    return int(text)


def list_filter(req: func.HttpRequest, statuses: tuple[str, ...]) -> Filter:
    wanted = req.params.get("status") or None
    if wanted is not None and wanted not in statuses:
        raise BadRequest(f"status: {wanted!r} is not one of {', '.join(statuses)}")
    return Filter(
        map=req.params.get("map") or None, status=wanted, since=_time(req, "since"), until=_time(req, "until"),
        page=_int(req, "page", 1), per_page=_int(req, "per_page", 100),
    )  # fmt: skip


def _body(req: func.HttpRequest) -> dict[str, Any]:
    raw = req.get_body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@bp.route(route="status", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def get_status(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    from shared.initialsync.store import RunStore

    control = _control()
    runs = await RunStore(bridge().clients.tables).runs()
    return json_response(await status(control.maps, control.ledger, get_store(), get_waiting(), runs))


@bp.route(route="errors", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def list_errors(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    try:
        f = list_filter(req, ERROR_STATUSES)
    except BadRequest as exc:
        return problem(400, "Bad Request", str(exc))
    return json_response((await get_store().errors(f)).as_json("errors"))


@bp.route(route="conflicts", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def list_conflicts(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    try:
        f = list_filter(req, CONFLICT_STATUSES)
    except BadRequest as exc:
        return problem(400, "Bad Request", str(exc))
    return json_response((await get_store().conflicts(f)).as_json("conflicts"))


def _errors() -> ErrorActions:
    return ErrorActions(get_store(), bridge().publisher)


@bp.route(route="errors/{id}/{action}", methods=["POST"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def act_on_error(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    action = req.route_params.get("action", "")
    try:
        partition, row = parse_entry_id(req.route_params.get("id", ""))
        if action == "replay":
            return json_response(await _errors().replay(partition, row, who.name), status=202)
        if action == "dismiss":
            reason = _body(req).get("reason") or req.params.get("reason") or ""
            return json_response(await _errors().dismiss(partition, row, str(reason), who.name))
    except (UnknownId, NotFoundError) as exc:
        return problem(404, "Not Found", str(exc))
    except BadRequest as exc:
        return problem(400, "Bad Request", str(exc))
    except InvalidAction as exc:
        return problem(exc.status, "Bad Request" if exc.status == 400 else "Conflict", str(exc))
    return problem(404, "Not Found", f"unknown action {action!r}: use replay or dismiss")


@bp.route(route="maps/{name}/errors/replay", methods=["POST"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def replay_map_errors(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    name = req.route_params.get("name", "")
    if name not in _control().maps.maps:
        return problem(404, "Not Found", f"no map named {name!r}")
    replayed = await _errors().replay_map(name, who.name)
    return json_response({"map": name, "replayed": len(replayed), "errors": replayed}, status=202)


@bp.route(route="conflicts/{id}/resolve", methods=["POST"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def resolve_conflict(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    from shared.connectors.errors import ConcurrencyConflict, ConnectorError
    from shared.sync.rows import DataverseRows, FnoRows

    try:
        partition, row = parse_entry_id(req.route_params.get("id", ""))
        resolution = Resolution.model_validate(_body(req))
        control = _control()
        connectors = bridge().connectors
        tables = {name: c.map for name, c in control.maps.maps.items()}
        actions = ConflictActions(get_store(), control.maps, control.ledger,
                                  DataverseRows(connectors.dataverse, tables), FnoRows(connectors.fno),
                                  bridge().apply.references)  # fmt: skip
        return json_response(await actions.resolve(partition, row, resolution, who.name))
    except (UnknownId, NotFoundError) as exc:
        return problem(404, "Not Found", str(exc))
    except BadRequest as exc:
        return problem(400, "Bad Request", str(exc))
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return problem(400, "Bad Request", f'expected {{"fields": {{"<column>": {{"take": ...}}}}}}: {detail}')
    except InvalidAction as exc:
        return problem(exc.status, "Bad Request" if exc.status == 400 else "Conflict", str(exc))
    except ConcurrencyConflict:
        return problem(409, "Conflict", "the row changed in one of the apps meanwhile: reload and decide again")
    except ConnectorError as exc:
        return problem(502, "Bad Gateway", f"an app refused the write: {exc}")


def _dead_letters() -> DeadLetters:
    return DeadLetters(bridge().clients.servicebus, bridge().settings.changes_queue)


@bp.route(route="deadletters", methods=["GET"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def list_dead_letters(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    try:
        limit, start = _int(req, "limit", 50), _int(req, "from", 1)
    except BadRequest as exc:
        return problem(400, "Bad Request", str(exc))
    try:
        return json_response({"deadletters": await _dead_letters().browse(limit, start, resolved_change)})
    except (ServiceBusError, OSError) as exc:
        return problem(503, "Service Unavailable", f"the dead-letter queue could not be read: {type(exc).__name__}")


@bp.route(route="deadletters/{id}/resubmit", methods=["POST"], auth_level=OPERATOR_LEVEL)
@answers_outage
async def resubmit_dead_letter(req: func.HttpRequest) -> func.HttpResponse:
    if isinstance(who := signed_in(req), func.HttpResponse):
        return who
    text = req.route_params.get("id", "")
    if not text.isdigit():
        return problem(404, "Not Found", f"{text!r} is not a dead letter's id (its sequence number)")
    try:
        resubmitted = await _dead_letters().resubmit(int(text), uuid.uuid4().hex[:8])
    except DeadLetterNotFound as exc:
        return problem(404, "Not Found", str(exc))
    except (ServiceBusError, OSError) as exc:
        return problem(503, "Service Unavailable", f"the dead letter could not be resubmitted: {type(exc).__name__}")
    return json_response(resubmitted | {"resubmitted_by": who.name}, status=202)
