"""Builders for RemoteExecutionContext and F&O payloads in their documented encodings."""

from __future__ import annotations

import json
from typing import Any

ENTITY = "Entity:http://schemas.microsoft.com/xrm/2011/Contracts"
REF = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts"
OPTION = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"
MONEY = "Money:http://schemas.microsoft.com/xrm/2011/Contracts"
COLLECTION = "EntityCollection:http://schemas.microsoft.com/xrm/2011/Contracts"
ORG = "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"


def kv(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in d.items()]


def entity(
    name: str, row_id: str, attributes: dict[str, Any], row_version: str | None = None, typed: bool = True
) -> dict[str, Any]:
    e: dict[str, Any] = {
        "Attributes": kv(attributes),
        "EntityState": None,
        "FormattedValues": [],
        "Id": row_id,
        "KeyAttributes": [],
        "LogicalName": name,
        "RelatedEntities": [],
        "RowVersion": row_version,
    }
    if typed:
        e["__type"] = ENTITY
    return e


def ref(name: str, row_id: str, label: str | None = None) -> dict[str, Any]:
    return {"__type": REF, "Id": row_id, "KeyAttributes": [], "LogicalName": name, "Name": label, "RowVersion": None}


def option(value: int) -> dict[str, Any]:
    return {"__type": OPTION, "Value": value}


def money(value: Any) -> dict[str, Any]:
    return {"__type": MONEY, "Value": value}


def context(
    message: str,
    table: str,
    row_id: str,
    target: dict[str, Any] | None,
    *,
    pre: dict[str, Any] | None = None,
    post: dict[str, Any] | None = None,
    shared: dict[str, Any] | None = None,
    parent_shared: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    operation_id: str = "4af10637-4ea2-e711-8122-000d3aa2331c",
) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "BusinessUnitId": "e2b9dd85-e89e-e711-8122-000d3aa2331c",
        "CorrelationId": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "Depth": 1,
        "InitiatingUserId": "11bb11bb-cc22-dd33-ee44-55ff55ff55ff",
        "InputParameters": kv({"Target": target}) if target is not None else [],
        "IsExecutingOffline": False,
        "IsInTransaction": False,
        "IsOfflinePlayback": False,
        "IsolationMode": 1,
        "MessageName": message,
        "Mode": 1,
        "OperationCreatedOn": "/Date(1506409448000-0700)/",
        "OperationId": operation_id,
        "OrganizationId": ORG,
        "OrganizationName": "OrgName",
        "OutputParameters": kv(outputs or {}),
        "ParentContext": None,
        "PostEntityImages": kv({"AsynchronousStepPrimaryName": post}) if post else [],
        "PreEntityImages": kv({"PreImage": pre}) if pre else [],
        "PrimaryEntityId": row_id,
        "PrimaryEntityName": table,
        "RequestId": None,
        "SecondaryEntityName": "none",
        "SharedVariables": kv(shared or {}),
        "Stage": 40,
        "UserId": "22bb22bb-cc22-dd33-ee44-55ff55ff55ff",
    }
    if parent_shared is not None:
        ctx["ParentContext"] = {**ctx, "SharedVariables": kv(parent_shared), "Stage": 30, "ParentContext": None}
    return ctx


def body(document: Any) -> bytes:
    return json.dumps(document).encode("utf-8")


def business_event(event_id: str, control: int, **fields: Any) -> dict[str, Any]:
    return {
        "BusinessEventId": event_id,
        "BusinessEventLegalEntity": "USMF",
        "ContextRecordSubject": "",
        "ControlNumber": control,
        "EventId": "6D0C9F3A-61C2-4F3B-9D7D-3A1B2C3D4E5F",
        "EventTime": "/Date(1700000000000)/",
        "EventTimeIso8601": "2023-11-14T22:13:20.1234567Z",
        "InitiatingUserAADObjectId": "{A1B2C3D4-0000-1111-2222-333344445555}",
        "MajorVersion": 0,
        "MinorVersion": 0,
        "ParentContextRecordSubjects": [],
        **fields,
    }
