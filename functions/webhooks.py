"""Change notifications in: POST /api/webhooks/dataverse and /api/webhooks/fno (function keys, one per source)."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import RETRY_AFTER_SECONDS, json_response, problem, wants_representation
from shared.bridge import bridge
from shared.bus.publisher import BusUnavailable
from shared.events.errors import ChangeTooLarge, InvalidNotification
from shared.events.model import ChangeEvent, Ignored, Side
from shared.ingest.service import IngestResult

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.route(route="webhooks/dataverse", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def dataverse_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return await _receive(req, Side.DATAVERSE)


@bp.route(route="webhooks/fno", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
async def fno_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return await _receive(req, Side.FNO)


async def _receive(req: func.HttpRequest, source: Side) -> func.HttpResponse:
    limit = bridge().settings.webhook_max_bytes
    body = req.get_body()
    if len(body) > limit:
        return problem(
            413, "Payload Too Large", f"the body is {len(body)} bytes; the limit is {limit} (WEBHOOK_MAX_BYTES)"
        )
    try:
        result = await bridge().ingest.receive(source, body, dict(req.headers))
    except ChangeTooLarge as exc:
        # The other changes of an F&O array are queued (`event_ids`); the refused ones are named (`refused`).
        return problem(
            413, "Payload Too Large", str(exc), extensions={"refused": list(exc.refused), "event_ids": list(exc.queued)}
        )
    except InvalidNotification as exc:
        return problem(400, "Bad Request", str(exc))
    except BusUnavailable as exc:
        log.warning("%s notification not queued: %s", source, exc)
        return problem(
            503,
            "Service Unavailable",
            "the change could not be queued; retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    return json_response(_answer(result, wants_representation(req)), status=200 if result.only_test_messages else 202)


def _answer(result: IngestResult, representation: bool) -> dict[str, object]:
    answer: dict[str, object] = {
        "accepted": len(result.accepted),
        "ignored": len(result.ignored),
        "event_ids": [e.event_id for e in result.accepted],
    }
    if representation:
        answer["events"] = [e.model_dump(mode="json") for e in result.accepted]
        answer["ignored_events"] = [_ignored(i) for i in result.ignored]
    return answer


def _ignored(item: ChangeEvent | Ignored) -> dict[str, object]:
    if isinstance(item, ChangeEvent):
        return {
            "reason": f"no enabled table map reads {item.source} {item.entity}",
            "event": item.model_dump(mode="json"),
        }
    return {"reason": item.reason, "entity": item.entity}
