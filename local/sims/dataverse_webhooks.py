"""The webhooks the Dataverse simulator sends: a RemoteExecutionContext per committed write and per matching step
registered in `serviceendpoints` / `sdkmessageprocessingsteps` / `sdkmessageprocessingstepimages` (filtering
attributes, pre/post images, WebhookKey / HttpHeader / HttpQueryString auth, `?tag=` in SharedVariables, the 256 KB
size-exceeded cut), handed to the deliverer in commit order per row."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from local.sims.delivery import Deliverer, Notification
from local.sims.engine import Change
from local.sims.schema import ColumnType, Table
from local.sims.store import Store, StoredRow
from shared.connectors.wire import dumps

CONTRACTS = "http://schemas.microsoft.com/xrm/2011/Contracts"
ORGANIZATION_ID = "4f1d3d3a-1f7e-4c5b-9b1c-6a0d2b1e5c11"
BUSINESS_UNIT_ID = "e2b9dd85-e89e-e711-8122-000d3aa2331c"
SIZE_LIMIT = 256 * 1024
MESSAGES = {"create": "Create", "update": "Update", "delete": "Delete"}
AUTH_WEBHOOK_KEY, AUTH_HTTP_HEADER, AUTH_HTTP_QUERY = 4, 5, 6
# What a step registration is made of: a write to any of these may change which steps run.
REGISTRATIONS = (
    "sdkmessages",
    "sdkmessagefilters",
    "serviceendpoints",
    "sdkmessageprocessingsteps",
    "sdkmessageprocessingstepimages",
)
Step = tuple[StoredRow, StoredRow, list[StoredRow]]  # (step, endpoint, images)


def wcf_date(iso: str) -> str:
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return f"/Date({int(moment.timestamp() * 1000)})/"


class DataverseWebhooks:
    """Mixed into the Dataverse dialect, whose store, tables and deliverer it uses."""

    store: Store
    tables: dict[str, Table]
    deliverer: Deliverer
    organization: str
    size_limit: int

    _steps: dict[tuple[str, str], tuple[tuple[tuple[int, int], ...], list[Step]]] | None = None

    def _rows(self, entity_set: str) -> list[StoredRow]:
        return self.store.all(entity_set)

    def steps_for(self, table: str, message: str) -> list[Step]:
        """(step, endpoint, images) of every enabled step registered for `message` on `table`; worked out again only
        after a write to a registration table (reading and decoding every registration row for each write was
        ≈ 40% of the simulator's CPU in a burst of creates)."""
        if self._steps is None:
            self._steps = {}
        generation = tuple(self.store.generation(s) for s in REGISTRATIONS)
        known = self._steps.get((table, message))
        if known is not None and known[0] == generation:
            return known[1]
        found = self._find_steps(table, message)
        self._steps[(table, message)] = (generation, found)
        return found

    def _find_steps(self, table: str, message: str) -> list[Step]:
        messages = {r.id: r.data.get("name") for r in self._rows("sdkmessages")}
        filters = {r.id: r.data for r in self._rows("sdkmessagefilters")}
        endpoints = {r.id: r for r in self._rows("serviceendpoints")}
        images = self._rows("sdkmessageprocessingstepimages")
        found = []
        for step in self._rows("sdkmessageprocessingsteps"):
            d = step.data
            if d.get("statecode", 0) != 0 or messages.get(d.get("sdkmessageid") or "") != message:
                continue
            f = filters.get(d.get("sdkmessagefilterid") or "")
            if f is None or f.get("primaryobjecttypecode") != table:
                continue
            endpoint = endpoints.get(d.get("eventhandler") or "")
            if endpoint is None:
                continue
            own = [i for i in images if i.data.get("sdkmessageprocessingstepid") == step.id]
            found.append((step, endpoint, own))
        return found

    def notify(self, changes: list[Change]) -> None:
        registered: dict[tuple[str, str], list[Step]] = {}
        for change in changes:
            if change.table.system:
                continue
            message = MESSAGES[change.operation]
            if (change.table.name, message) not in registered:  # once per request: a `$batch` holds up to 1,000
                registered[(change.table.name, message)] = self.steps_for(change.table.name, message)
            for step, endpoint, images in registered[(change.table.name, message)]:
                if step.id.lower() in change.bypass or (
                    ("customasync" if int(step.data.get("mode") or 0) == 1 else "customsync") in change.bypass
                ):
                    continue  # the write asked to skip this step's logic (bypass custom Dataverse logic)
                attributes = [
                    a.strip() for a in str(step.data.get("filteringattributes") or "").split(",") if a.strip()
                ]
                if message == "Update" and attributes and not set(attributes) & set(change.submitted):
                    continue
                body = self.context(change, step, images)
                headers = {
                    "Content-Type": "application/json",
                    "x-ms-dynamics-organization": self.organization,
                    "x-ms-dynamics-entity-name": change.table.name,
                    "x-ms-dynamics-request-name": message,
                    "x-ms-correlation-request-id": body["CorrelationId"],
                }
                encoded = dumps(body).encode("utf-8")
                if len(encoded) > self.size_limit:
                    for cut in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
                        body[cut] = [] if cut != "ParentContext" else None
                    encoded = dumps(body).encode("utf-8")
                    headers["x-ms-dynamics-msg-size-exceeded"] = "true"
                url = self._endpoint_url(endpoint, headers)
                row = change.after or change.before
                self.deliverer.submit(
                    Notification(f"{change.table.name}:{row.id if row else ''}", url, headers, encoded)
                )

    def _endpoint_url(self, endpoint: StoredRow, headers: dict[str, str]) -> str:
        url = str(endpoint.data.get("url") or "")
        auth = int(endpoint.data.get("authtype") or 0)
        value = str(endpoint.data.get("authvalue") or "")
        if auth == AUTH_WEBHOOK_KEY:
            return url + ("&" if "?" in url else "?") + urlencode({"code": value})
        settings = _settings(value)
        if auth == AUTH_HTTP_HEADER:
            headers.update(settings)
        elif auth == AUTH_HTTP_QUERY and settings:
            return url + ("&" if "?" in url else "?") + urlencode(settings)
        return url

    def _value(self, table: Table, name: str, value: Any) -> Any:
        column = table.column(name)
        if value is None or column is None:
            return value
        if column.type is ColumnType.LOOKUP:
            target = self.tables.get(column.target or "")
            return {
                "__type": f"EntityReference:{CONTRACTS}",
                "Id": value,
                "KeyAttributes": [],
                "LogicalName": target.name if target else column.target,
                "Name": None,
                "RowVersion": None,
            }
        if column.type is ColumnType.CHOICE and isinstance(value, int):
            return {"__type": f"OptionSetValue:{CONTRACTS}", "Value": value}
        if column.type is ColumnType.DATETIME and isinstance(value, str):
            return wcf_date(value)
        return value

    def entity(self, table: Table, row: StoredRow, names: list[str] | None, image: bool = False) -> dict[str, Any]:
        """A Target or an image. `RowVersion` is null, as in Microsoft's sample of a webhook body (../shared/samples/
        dataverse-webhook-update-contact.json: the Target's and the image's): a row's version reaches a webhook only
        as the `versionnumber` column of an image that holds it (every column, or it named among the image's)."""
        data = row.data if names is None else {n: row.data.get(n) for n in names if n in row.data}
        attributes = [{"key": k, "value": self._value(table, k, v)} for k, v in data.items()]
        if table.primary_id:
            attributes.append({"key": table.primary_id, "value": row.id})
        attributes.append({"key": "modifiedon", "value": wcf_date(row.modified)})
        if image and (names is None or "versionnumber" in names):
            attributes.append({"key": "versionnumber", "value": row.version})
        return {
            "__type": f"Entity:{CONTRACTS}",
            "Attributes": attributes,
            "EntityState": None,
            "FormattedValues": [],
            "Id": row.id,
            "KeyAttributes": [],
            "LogicalName": table.name,
            "RelatedEntities": [],
            "RowVersion": None,
        }

    def context(self, change: Change, step: StoredRow, images: list[StoredRow]) -> dict[str, Any]:
        table, row = change.table, change.after or change.before
        assert row is not None
        message = MESSAGES[change.operation]
        if change.operation == "delete":
            target: dict[str, Any] = {
                "__type": f"EntityReference:{CONTRACTS}",
                "Id": row.id,
                "KeyAttributes": [],
                "LogicalName": table.name,
                "Name": None,
                "RowVersion": None,
            }
        else:
            assert change.after is not None
            target = self.entity(table, change.after, None if change.operation == "create" else change.submitted)
        pre, post = [], []
        for image in images:
            kind = int(image.data.get("imagetype") or 0)
            columns = [a.strip() for a in str(image.data.get("attributes") or "").split(",") if a.strip()] or None
            alias = str(image.data.get("entityalias") or "Image")
            if kind in (0, 2) and change.before is not None:
                pre.append({"key": alias, "value": self.entity(table, change.before, columns, image=True)})
            if kind in (1, 2) and change.after is not None:
                post.append({"key": alias, "value": self.entity(table, change.after, columns, image=True)})
        mode = int(step.data.get("mode") or 1)
        if mode == 1 and change.after is not None and not post:
            post.append(
                {
                    "key": "AsynchronousStepPrimaryName",
                    "value": self.entity(table, change.after, ["name"] if "name" in change.after.data else []),
                }
            )
        shared = [{"key": "tag", "value": change.tag}] if change.tag else []
        now = f"/Date({int(time.time() * 1000)})/"
        correlation = str(uuid.uuid4())
        parent = {
            "BusinessUnitId": BUSINESS_UNIT_ID,
            "CorrelationId": correlation,
            "Depth": 1,
            "InitiatingUserId": change.user,
            "InputParameters": [{"key": "Target", "value": target}],
            "MessageName": message,
            "Mode": 0,
            "OperationCreatedOn": now,
            "OperationId": str(uuid.uuid4()),
            "OrganizationId": ORGANIZATION_ID,
            "OrganizationName": "sim",
            "OutputParameters": [],
            "ParentContext": None,
            "PostEntityImages": [],
            "PreEntityImages": [],
            "PrimaryEntityId": row.id,
            "PrimaryEntityName": table.name,
            "RequestId": str(uuid.uuid4()),
            "SecondaryEntityName": "none",
            "SharedVariables": shared,
            "Stage": 30,
            "UserId": change.user,
        }
        return parent | {
            "InitiatingUserAgent": "sim",
            "IsExecutingOffline": False,
            "IsInTransaction": False,
            "IsOfflinePlayback": False,
            "IsolationMode": 1,
            "Mode": mode,
            "OutputParameters": [{"key": "id", "value": row.id}] if change.operation == "create" else [],
            "OwningExtension": {
                "Id": step.id,
                "KeyAttributes": [],
                "LogicalName": "sdkmessageprocessingstep",
                "Name": step.data.get("name"),
                "RowVersion": None,
            },
            "ParentContext": parent,
            "PostEntityImages": post,
            "PreEntityImages": pre,
            "SharedVariables": shared,
            "Stage": int(step.data.get("stage") or 40),
        }


def _settings(xml: str) -> dict[str, str]:
    """`<settings><setting name="x-api-key" value="…" /></settings>`: the HttpHeader / HttpQueryString auth value."""
    if not xml.strip():
        return {}
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return {}
    return {s.get("name", ""): s.get("value", "") for s in root.iter("setting") if s.get("name")}
