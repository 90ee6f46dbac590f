"""F&O OData client (../shared/reference/fno.md): rows by their full key, `cross-company=true` always, create, update
with `If-Match`, upsert as PATCH then POST on 404, delete, and `$batch` (whose failures hide under an outer 200)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shared.connectors.batch import BatchOperation
from shared.connectors.errors import NotFound
from shared.connectors.odata import ODataClient, WriteResult
from shared.connectors.wire import loads, to_wire

CROSS_COMPANY = {"cross-company": "true"}


def _body(values: Mapping[str, Any], leave_out: Sequence[str] = ()) -> dict[str, Any]:
    return {name: to_wire(v) for name, v in values.items() if name not in leave_out}


class FnoClient(ODataClient):
    def _read_params(self, select: Sequence[str] | None) -> dict[str, str]:
        return CROSS_COMPANY | super()._read_params(select)

    def update_operation(
        self, entity_set: str, key: Mapping[str, Any], values: Mapping[str, Any], if_match: str = "*"
    ) -> BatchOperation:
        # Key fields cannot change through PATCH: they are in the URL, never in the body.
        return BatchOperation(
            "PATCH",
            self.path(entity_set, key) + "?cross-company=true",
            _body(values, list(key)),
            {"If-Match": if_match},
        )

    def create_operation(self, entity_set: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> BatchOperation:
        return BatchOperation("POST", entity_set + "?cross-company=true", _body({**values, **key}))

    async def create(self, entity_set: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> WriteResult:
        op = self.create_operation(entity_set, key, values)
        response = await self.transport.request("POST", entity_set, params=CROSS_COMPANY, body=op.body)
        row = loads(response.content) if response.content else None
        etag = response.headers.get("ETag") or (row or {}).get("@odata.etag")
        return WriteResult(response.status_code, etag, response.headers.get("Location"), row)

    async def update(
        self, entity_set: str, key: Mapping[str, Any], values: Mapping[str, Any], *, if_match: str = "*"
    ) -> WriteResult:
        """PATCH an existing row; `NotFound` if it does not exist, `ConcurrencyConflict` if the ETag is stale."""
        op = self.update_operation(entity_set, key, values, if_match)
        response = await self.transport.request(
            "PATCH", self.path(entity_set, key), params=CROSS_COMPANY, body=op.body, headers=op.headers
        )
        return WriteResult(response.status_code, response.headers.get("ETag"))

    async def upsert(self, entity_set: str, key: Mapping[str, Any], values: Mapping[str, Any]) -> WriteResult:
        """F&O has no upsert: PATCH, and POST when the row is not there."""
        try:
            return await self.update(entity_set, key, values)
        except NotFound:
            return await self.create(entity_set, key, values)

    async def delete(self, entity_set: str, key: Mapping[str, Any] | str, *, if_match: str | None = None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        await self.transport.request("DELETE", self.path(entity_set, key), params=CROSS_COMPANY, headers=headers)
