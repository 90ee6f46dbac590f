"""Table Storage requests on apply's hot path, encoded and parsed here, sent through the SDK client's own pipeline
(auth, retries): point reads, and entity-group transactions of entities of string properties (the ledger's entries
and index rows, the console's waiting rows).

Point reads: the SDK's `get_entity` answers a missing entity (most look-ups of a burst of new rows) by raising
through its error mapping and deserialization, several times the cost of the read itself.

Transactions: the SDK's `TableClient.submit_transaction` builds and parses the multipart
body through the stdlib `email` package: ≈1 ms of CPU per entity, more than the rest of apply's work on a change.
Same wire format (Microsoft Learn, "Performing entity group transactions": one change set, up to 100 operations of
one partition), same answers (each operation's ETag), sent through the client's own pipeline (auth, retries)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from azure.core.rest import HttpRequest

_CODE = re.compile(rb'"code" *: *"([^"]+)"')
_JSON = json.JSONEncoder(ensure_ascii=False)  # made once: `json.dumps` makes one per call for a non-default option


class TableRequestFailed(Exception):
    """The service refused the request (a transaction: its change set as a whole): `status` and `code` of the
    operation that failed (409 EntityAlreadyExists, 412 UpdateConditionNotSatisfied, 413 too large, …)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code

    @property
    def conflict(self) -> bool:
        """An entity to create exists already, or one to replace changed since it was read."""
        return self.status in (409, 412) and self.code in ("EntityAlreadyExists", "UpdateConditionNotSatisfied")


def _literal(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")


def _entity_url(table: Any, entity: dict[str, Any]) -> str:
    pk, rk = _literal(str(entity["PartitionKey"])), _literal(str(entity["RowKey"]))
    return f"{table.url}/{table.table_name}(PartitionKey='{pk}',RowKey='{rk}')"


def _part(table: Any, operation: tuple[Any, ...]) -> str:
    """One change-set part. Operations as `submit_transaction` takes them: ("create", entity), ("upsert", entity)
    (replace), ("update", entity, {"etag": …}) (replace if unchanged), ("delete", entity) (whatever its ETag)."""
    kind, entity = operation[0], operation[1]
    if any(not isinstance(v, str) for v in entity.values()):
        raise TypeError("only entities of string properties are encoded here")
    body = ""
    if kind == "create":
        line, extra = f"POST {table.url}/{table.table_name} HTTP/1.1", "Prefer: return-no-content\r\n"
        body = _JSON.encode(entity)
    elif kind == "upsert":
        line, extra = f"PUT {_entity_url(table, entity)} HTTP/1.1", ""
        body = _JSON.encode(entity)
    elif kind == "update":
        line, extra = f"PUT {_entity_url(table, entity)} HTTP/1.1", f"If-Match: {operation[2]['etag']}\r\n"
        body = _JSON.encode(entity)
    elif kind == "delete":
        line, extra = f"DELETE {_entity_url(table, entity)} HTTP/1.1", "If-Match: *\r\n"
    else:
        raise ValueError(f"not an operation encoded here: {kind}")
    return (
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        f"{line}\r\nContent-Type: application/json\r\nAccept: application/json;odata=minimalmetadata\r\n"
        f"DataServiceVersion: 3.0\r\n{extra}\r\n{body}\r\n"
    )


async def transact(table: Any, operations: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """One entity-group transaction on `table` (an `azure.data.tables.aio.TableClient`): each operation's answer
    (`{"etag": …}`), or `TableRequestFailed`."""
    batch, changeset = f"batch_{uuid.uuid4()}", f"changeset_{uuid.uuid4()}"
    parts = "".join(f"--{changeset}\r\n{_part(table, op)}" for op in operations)
    body = (
        f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n{parts}--{changeset}--\r\n"
        f"--{batch}--\r\n"
    ).encode()
    request = HttpRequest(
        "POST",
        f"{table.scheme}://{table._primary_hostname}/$batch",
        headers={"x-ms-version": table.api_version, "DataServiceVersion": "3.0",
                 "MaxDataServiceVersion": "3.0;NetFx", "Accept": "application/json",
                 "Content-Type": f"multipart/mixed; boundary={batch}"},
        content=body,
    )  # fmt: skip
    response = await table._client.send_request(request, stream=True)  # streamed: no content decoding
    content: bytes = await response.read()
    if response.status_code != 202:
        raise TableRequestFailed(response.status_code, _code(content), content[:300].decode("utf-8", "replace"))
    # Each operation's response, from its status line on: a line beginning `HTTP/1.1 ` starts one. (Found by plain
    # search, not a multi-line regular expression: the body is ~450 bytes an operation, scanned three times that way.)
    responses = (b"\n" + content).split(b"\nHTTP/1.1 ")[1:]
    statuses = [int(r[:3]) for r in responses if r[:3].isdigit()]
    failed = next((s for s in statuses if not 200 <= s < 300), None)
    if failed is not None or len(statuses) != len(operations):
        status = failed or 500
        raise TableRequestFailed(status, _code(content), content[:300].decode("utf-8", "replace"))
    return [{"etag": _etag(r.partition(b"\r\n\r\n")[0])} for r in responses]


def _etag(head: bytes) -> str | None:
    """The ETag header's value in a response's status line and headers (a header's name is case-insensitive)."""
    at = head.lower().find(b"\netag:")
    if at < 0:
        return None
    end = head.find(b"\n", at + 1)
    value = head[at + 6 : end if end >= 0 else len(head)].removesuffix(b"\r").lstrip(b" ")
    return value.decode() if value else None


async def read_entity(table: Any, partition: str, row: str) -> dict[str, Any] | None:
    """One entity by its keys (Microsoft Learn, "Query Entities": `Table(PartitionKey='…',RowKey='…')`), its
    properties without OData metadata and its ETag under `etag`; None when it does not exist."""
    request = HttpRequest(
        "GET",
        _entity_url(table, {"PartitionKey": partition, "RowKey": row}),
        headers={"x-ms-version": table.api_version, "DataServiceVersion": "3.0",
                 "Accept": "application/json;odata=nometadata"},
    )  # fmt: skip
    response = await table._client.send_request(request, stream=True)
    content: bytes = await response.read()
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise TableRequestFailed(response.status_code, _code(content), content[:300].decode("utf-8", "replace"))
    entity: dict[str, Any] = json.loads(content)
    entity["etag"] = response.headers.get("ETag")
    return entity


def _code(content: bytes) -> str:
    found = _CODE.search(content)
    return found.group(1).decode() if found else ""
