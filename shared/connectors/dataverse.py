"""Dataverse Web API v9.2 client (../shared/reference/dataverse.md): reads, upserts by alternate key, conditional
writes, deletes, lookups by `@odata.bind`, `?tag=` on every write, and `$batch`."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from shared.connectors.batch import BatchOperation
from shared.connectors.http import NO_RETRY
from shared.connectors.odata import Key, ODataClient, WriteResult
from shared.connectors.wire import key_segment, loads, to_wire
from shared.events.enums import picklist_query

_ENTITY_ID = re.compile(r"\(([0-9a-fA-F-]{36})\)\s*$")


class WriteMode(StrEnum):
    UPSERT = "upsert"  # PATCH, no condition: created or updated
    CREATE = "create"  # If-None-Match: *  → 412 when the row exists
    UPDATE = "update"  # If-Match: *       → 404 when it does not


Bind = tuple[str, Key]  # (entity set, id or alternate key) of the row a lookup points at


# Multi-table "Customer" lookups are bound through one navigation property per target table
# (`customerid_account`, `customerid_contact`); `customerid@odata.bind` is refused as an undeclared property.
# Microsoft Learn, "Associate table rows on create" / "Multi-table lookups".
CUSTOMER_LOOKUPS = frozenset({"customerid", "parentcustomerid"})
_CUSTOMER_TARGETS = {"accounts": "account", "contacts": "contact"}


def lookup_property(column: str) -> str:
    """A lookup column's value as the Web API names it in rows, `$select`, `$filter` and alternate keys."""
    return f"_{column}_value"


def column_of(name: str) -> str:
    """`_x_value` → `x`; any other name as it is."""
    return name[1:-6] if name.startswith("_") and name.endswith("_value") else name


def navigation_property(column: str, target: Bind | None) -> str:
    """The single-valued navigation property `@odata.bind` sets for a lookup column pointing at `target`."""
    if column in CUSTOMER_LOOKUPS and target is not None and target[0] in _CUSTOMER_TARGETS:
        return f"{column}_{_CUSTOMER_TARGETS[target[0]]}"
    return column


def bind_value(target: Bind | None) -> str | None:
    """`/entityset(<id>)` or `/entityset(<alternate key>)` — a lookup inside the key as `_<lookup>_value`."""
    if target is None:
        return None
    entity_set, key = target
    if isinstance(key, Mapping):
        # Worked out once per row bound: a bulk write binds the same few rows (a company, a group) thousands of times.
        try:
            return _bind_path(entity_set, tuple((name, type(value), value) for name, value in key.items()))
        except TypeError:  # a key value that cannot be hashed (none of today's)
            pass
    return f"/{entity_set}{key_segment(key)}"


@functools.lru_cache(maxsize=4096)
def _bind_path(entity_set: str, key: tuple[tuple[str, type, Any], ...]) -> str:
    # Each value with its type: 1, 1.0 and True are equal keys to a cache, not the same literal in a URL.
    return f"/{entity_set}{key_segment({name: value for name, _, value in key})}"


def write_body(values: Mapping[str, Any], lookups: Mapping[str, Bind | None] | None, key: Key | None) -> dict[str, Any]:
    """The PATCH/POST body: alternate-key columns left out (they are in the URL, a lookup there as `_x_value`),
    lookups as `<navigation property>@odata.bind`."""
    skip = {column_of(k) for k in key} if isinstance(key, Mapping) else set()
    body = {name: to_wire(value) for name, value in values.items() if name not in skip}
    for name, target in (lookups or {}).items():
        if name not in skip:
            body[f"{navigation_property(name, target)}@odata.bind"] = bind_value(target)
    return body


class DataverseClient(ODataClient):
    def _write(
        self,
        entity_set: str,
        key: Key,
        values: Mapping[str, Any],
        *,
        lookups: Mapping[str, Bind | None] | None = None,
        mode: WriteMode = WriteMode.UPSERT,
        if_match: str | None = None,
        tag: str | None = None,
        return_row: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> BatchOperation:
        """`headers`: more request headers, after the write's own (e.g. the bypass of custom logic)."""
        sent: dict[str, str] = {}
        if if_match is not None:
            sent["If-Match"] = if_match
        elif mode is WriteMode.CREATE:
            sent["If-None-Match"] = "*"
        elif mode is WriteMode.UPDATE:
            sent["If-Match"] = "*"
        if return_row:
            sent["Prefer"] = "return=representation"
        if headers:
            sent |= headers
        path = self.path(entity_set, key) + (f"?tag={tag}" if tag else "")
        return BatchOperation("PATCH", path, write_body(values, lookups, key), sent)

    def write_operation(self, entity_set: str, key: Key, values: Mapping[str, Any], **kw: Any) -> BatchOperation:
        """The same request as `write`, for a `$batch`."""
        return self._write(entity_set, key, values, **kw)

    async def write(self, entity_set: str, key: Key, values: Mapping[str, Any], **kw: Any) -> WriteResult:
        """Upsert (default), create-only or update-only by id or alternate key; with `if_match` an ETag-conditional
        update (`ConcurrencyConflict` on 412). `tag` marks the write so its webhook is recognised as ours."""
        op = self._write(entity_set, key, values, **kw)
        response = await self.transport.request(
            op.method, op.path.split("?")[0], params=_tag_params(op.path), body=op.body, headers=op.headers
        )
        entity_url = response.headers.get("OData-EntityId")
        row = loads(response.content) if response.content else None
        return WriteResult(
            response.status_code, response.headers.get("ETag") or (row or {}).get("@odata.etag"), entity_url, row
        )

    async def create(self, entity_set: str, values: Mapping[str, Any], **kw: Any) -> WriteResult:
        """POST a new row (the server assigns its id)."""
        tag = kw.pop("tag", None)
        lookups = kw.pop("lookups", None)
        response = await self.transport.request(
            "POST", entity_set, params={"tag": tag} if tag else None, body=write_body(values, lookups, None)
        )
        entity_url = response.headers.get("OData-EntityId")
        return WriteResult(response.status_code, response.headers.get("ETag"), entity_url)

    async def picklist_definitions(self, table: str) -> Any:
        """Every picklist attribute of `table` with its options, local or global (`shared.events.enums`) — one
        request, not retried: the caller keeps working without it (`NotFound` when there is no such table)."""
        path, params = picklist_query(table)
        return loads((await self.transport.request("GET", path, params=params, retry=NO_RETRY)).content)

    async def delete(  # type: ignore[override]
        self, entity_set: str, key: Key, *, if_match: str | None = None, tag: str | None = None
    ) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        await self.transport.request(
            "DELETE", self.path(entity_set, key), params={"tag": tag} if tag else None, headers=headers
        )


def entity_id(entity_url: str | None) -> str | None:
    """The row GUID at the end of an `OData-EntityId` URL."""
    match = _ENTITY_ID.search(entity_url or "")
    return match.group(1).lower() if match else None


def _tag_params(path: str) -> dict[str, str] | None:
    _, _, query = path.partition("?tag=")
    return {"tag": query} if query else None
