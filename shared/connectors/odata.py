"""What the Dataverse and F&O clients share: rows with ETags, reads with paging, deletes and `$batch`."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.connectors import batch as batching
from shared.connectors.batch import BatchOperation, BatchResult
from shared.connectors.http import ODataTransport
from shared.connectors.wire import etag_version, key_segment, loads

Key = Mapping[str, Any] | str  # named key fields, or a Dataverse row id


@dataclass
class Row:
    values: dict[str, Any]
    etag: str | None = None

    @property
    def version(self) -> str | None:
        return etag_version(self.etag)


@dataclass
class WriteResult:
    status: int
    etag: str | None = None
    entity_id: str | None = None  # the row's URL (`OData-EntityId`) or id
    row: dict[str, Any] | None = None

    @property
    def version(self) -> str | None:
        return etag_version(self.etag)


def row_from(document: Mapping[str, Any]) -> Row:
    values = {k: v for k, v in document.items() if not k.startswith("@odata.")}
    etag = document.get("@odata.etag")
    return Row(values, str(etag) if etag else None)


class ODataClient:
    def __init__(self, transport: ODataTransport) -> None:
        self.transport = transport

    def path(self, entity_set: str, key: Key | None = None) -> str:
        return entity_set + (key_segment(key) if key is not None else "")

    def _read_params(self, select: Sequence[str] | None) -> dict[str, str]:
        return {"$select": ",".join(select)} if select else {}

    async def get(self, entity_set: str, key: Key, select: Sequence[str] | None = None) -> Row:
        """One row by key; `NotFound` when there is none."""
        response = await self.transport.request("GET", self.path(entity_set, key), params=self._read_params(select))
        return row_from(loads(response.content))

    async def list(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[Row]:
        """Every matching row, following the server's `@odata.nextLink` pages."""
        params = self._read_params(select)
        if filter:
            params["$filter"] = filter
        url: str | None = entity_set
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        while url is not None:
            response = await self.transport.request("GET", url, params=params or None, headers=headers)
            page = loads(response.content)
            for document in page.get("value", []):
                yield row_from(document)
            url, params = page.get("@odata.nextLink"), {}

    async def delete(self, entity_set: str, key: Key, *, if_match: str | None = None) -> None:
        headers = {"If-Match": if_match} if if_match else {}
        await self.transport.request("DELETE", self.path(entity_set, key), headers=headers)

    async def batch(
        self,
        operations: Sequence[BatchOperation],
        *,
        atomic: bool = True,
        continue_on_error: bool = False,
    ) -> builtins.list[BatchResult]:
        """Send up to 1,000 operations in one `$batch`: one atomic change set, or (atomic=False) one change set
        each, so that one failure does not undo the others; a result per operation either way."""
        change_sets = [list(operations)] if atomic else [[op] for op in operations]
        content_type, body = batching.encode(self.transport.base_url, change_sets)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = await self.transport.request("POST", "$batch", content=body, headers=headers)
        return batching.results(
            self.transport.base_url, change_sets, response.headers.get("content-type", ""), response.content
        )

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> ODataClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
