"""Dataverse webhooks: a RemoteExecutionContext (JSON) → `ChangeEvent`s. Pure: bytes and headers in, events out.

Facts: ../shared/reference/dataverse.md. Unknown and missing keys are tolerated; a body that is not a
RemoteExecutionContext, or lacks what its message requires, is an `InvalidNotification` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import JsonValue

from shared.events.body import decode_json
from shared.events.errors import InvalidNotification
from shared.events.model import ChangeEvent, Ignored, Operation, Side, event_id
from shared.events.values import attributes, canonical, pairs, parse_wcf_date, text_member

__all__ = ["decode_json", "is_execution_context", "parse_context", "parse_dataverse", "shared_variables"]

OPERATIONS = {"Create": Operation.CREATE, "Update": Operation.UPDATE, "Delete": Operation.DELETE}
SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
_EMPTY_GUID = "00000000-0000-0000-0000-000000000000"


def is_execution_context(body: Any) -> bool:
    return (
        isinstance(body, dict) and "MessageName" in body and ("InputParameters" in body or "PrimaryEntityName" in body)
    )


def shared_variables(context: dict[str, Any], where: str = "SharedVariables") -> dict[str, Any]:
    """SharedVariables of the context and of every ParentContext, the nearest one winning."""
    found: dict[str, Any] = {}
    chain: list[dict[str, Any]] = []
    node: Any = context
    while isinstance(node, dict) and len(chain) < 16:
        chain.append(node)
        node = node.get("ParentContext")
    for depth, ctx in enumerate(reversed(chain)):
        found.update(pairs(ctx.get("SharedVariables"), f"{'ParentContext.' * (len(chain) - 1 - depth)}{where}"))
    return found


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


def _guid(value: Any) -> str | None:
    text = _text(value)
    if text is None or text.lower() == _EMPTY_GUID:
        return None
    return text.lower()


def _occurred_at(context: dict[str, Any]) -> datetime:
    raw = text_member(context, "OperationCreatedOn", "context")
    if raw:
        return parse_wcf_date(raw, "OperationCreatedOn").astimezone(UTC)
    return datetime.now(UTC)


def _images(context: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [v for v in pairs(context.get(key), key).values() if isinstance(v, dict)]


def _version(target: dict[str, Any] | None, images: list[dict[str, Any]], fields: dict[str, JsonValue]) -> str | None:
    for entity in [target, *images]:
        if isinstance(entity, dict) and (row_version := text_member(entity, "RowVersion", "entity")):
            return row_version
    version = fields.get("versionnumber")
    if isinstance(version, int) and not isinstance(version, bool):
        return str(version)
    if isinstance(version, str) and version.isdigit():
        return version
    # Not `modifiedon`: to the second only, two changes of a row within one second would look the same version and
    # the second be skipped as stale. Without a version the change is never stale; it is an echo by its values.
    return None


def parse_context(
    context: dict[str, Any],
    headers: Mapping[str, str],
    source: Side = Side.DATAVERSE,
    operations: Mapping[str, Operation] = OPERATIONS,
) -> ChangeEvent | Ignored:
    """One RemoteExecutionContext → one event (or why it is ignored). `headers` keys are lower case."""
    message = context.get("MessageName")
    if not isinstance(message, str) or not message:
        raise InvalidNotification("not a RemoteExecutionContext: MessageName is missing")
    entity = _text(text_member(context, "PrimaryEntityName", "context"))
    operation = operations.get(message)
    if operation is None:
        return Ignored(f"message {message!r} is not a create, update or delete", entity)
    size_exceeded = headers.get(SIZE_EXCEEDED_HEADER, "").strip().lower() in ("true", "1")
    inputs = pairs(context.get("InputParameters"), "InputParameters")
    target = inputs.get("Target")
    if target is None and not size_exceeded:
        raise InvalidNotification(f"{message} without InputParameters.Target")
    if target is not None and not isinstance(target, dict):
        raise InvalidNotification("InputParameters.Target is not an entity or entity reference")
    entity = entity or (_text(text_member(target, "LogicalName", "InputParameters.Target")) if target else None)
    if not entity:
        raise InvalidNotification("the table is unknown: neither PrimaryEntityName nor Target.LogicalName is set")

    pre, post = _images(context, "PreEntityImages"), _images(context, "PostEntityImages")
    target_fields = attributes(target, "InputParameters.Target") if target and operation != Operation.DELETE else {}
    fields: dict[str, JsonValue] = {}
    for image in pre + post:  # the known row: before, then after, then what was submitted
        fields.update(attributes(image, "EntityImage"))
    fields.update(target_fields)

    outputs = pairs(context.get("OutputParameters"), "OutputParameters")
    row_id = (
        _guid(text_member(target, "Id", "InputParameters.Target") if target else None)
        or _guid(text_member(context, "PrimaryEntityId", "context"))
        or _guid(text_member(outputs, "id", "OutputParameters"))
    )
    if row_id is None:
        raise InvalidNotification(
            f"{message} of {entity}: no row id (Target.Id, PrimaryEntityId or OutputParameters.id)"
        )
    keys: dict[str, JsonValue] = {}
    if target:
        keys = {
            k: canonical(v, f"Target.KeyAttributes.{k}")
            for k, v in pairs(target.get("KeyAttributes"), "Target.KeyAttributes").items()
        }
    variables = shared_variables(context)
    tag = variables.get("tag")
    correlation = (
        _text(text_member(context, "CorrelationId", "context")) or headers.get("x-ms-correlation-request-id") or None
    )
    version = _version(target, post + pre, fields)
    return ChangeEvent(
        event_id=event_id(
            source,
            _guid(text_member(context, "OrganizationId", "context")) or headers.get("x-ms-dynamics-organization"),
            entity,
            row_id,
            message,
            version,
            _guid(text_member(context, "OperationId", "context")),
            _guid(text_member(context, "RequestId", "context")),
            correlation,
        ),
        source=source,
        entity=entity,
        operation=operation,
        row_id=row_id,
        keys=keys,
        company=None,
        fields=fields,
        changed_fields=list(target_fields),
        source_version=version,
        occurred_at=_occurred_at(context),
        initiating_user=_guid(text_member(context, "InitiatingUserId", "context")),
        user=_guid(text_member(context, "UserId", "context")),
        correlation_id=correlation,
        write_tag=str(tag) if tag not in (None, "") else None,
        reread_required=size_exceeded,
    )


def parse_dataverse(body: bytes, headers: Mapping[str, str]) -> list[ChangeEvent | Ignored]:
    """A Dataverse webhook POST → its events (always one context; a list so both sources look alike)."""
    document = decode_json(body, "Dataverse")
    if not is_execution_context(document):
        raise InvalidNotification(
            "not a RemoteExecutionContext: expected a JSON object with MessageName and InputParameters"
        )
    return [parse_context(document, {k.lower(): v for k, v in headers.items()})]
