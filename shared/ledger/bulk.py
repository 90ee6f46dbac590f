"""Ledger writes in bulk, for sync runs: entries and their id-index rows in entity-group transactions of at most
100 operations, one partition (map) each — Microsoft Learn, "Performing entity group transactions" (Table
Storage: up to 100 entities, one partition key). An entry read with an ETag is saved only if it is unchanged
(live apply wins); a transaction refused for one entry is retried entry by entry, so one concurrent change does not
sink its 99 neighbours."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.data.tables import TableTransactionError
from azure.data.tables.aio import TableClient

from shared.ledger.model import LedgerEntry, key_text
from shared.ledger.tables import Ledger, index_entity, index_row_key
from shared.ledger.wire import TableRequestFailed, transact
from shared.maps.model import Side

MAX_TRANSACTION = 100


def _operations(entry: LedgerEntry, index_as: str = "upsert") -> list[tuple[Any, ...]]:
    """The entry's write and its new index rows' (`index_as`: "upsert", or "create" where none should be there)."""
    entity = {"PartitionKey": entry.map, "RowKey": key_text(entry.key), "Entry": entry.model_dump_json()}
    write: tuple[Any, ...] = (
        ("create", entity)
        if entry.etag is None
        else (
            "update",
            entity,
            {"mode": "replace", "etag": entry.etag, "match_condition": MatchConditions.IfNotModified},
        )
    )
    index = [
        (index_as, index_entity(entry.map, side, row_id, entry.key))
        for side in Side
        if (row_id := entry.side(side).row_id) and (side, row_id) not in entry.indexed
    ]
    return [write, *index]


@dataclass
class BulkResult:
    saved: list[LedgerEntry] = field(default_factory=list)
    refused: list[LedgerEntry] = field(default_factory=list)  # changed meanwhile (live apply): left to it


async def save_many(ledger: Ledger, entries: Sequence[LedgerEntry], in_flight: int = 8) -> BulkResult:
    """Create or (ETag-conditionally) replace `entries`, all of one map, in transactions of ≤ 100 operations,
    `in_flight` at a time."""
    await ledger.ensure_tables()
    table = ledger.table("ledger")
    result = BulkResult()
    now = datetime.now(UTC)
    gate = asyncio.Semaphore(in_flight)

    async def submit(chunk: list[tuple[LedgerEntry, int]], operations: list[tuple[Any, ...]]) -> None:
        async with gate:
            try:
                answers = await transact(table, operations)  # shared/ledger/wire.py: our own encoding
            except TableRequestFailed:
                for entry, _ in chunk:  # one entry changed meanwhile: save the others one by one
                    try:
                        answers_one = await table.submit_transaction(_operations(entry))
                    except TableTransactionError:
                        result.refused.append(entry)
                        continue
                    _saved(entry, answers_one[0])
                    result.saved.append(entry)
                return
        position = 0
        for entry, count in chunk:
            _saved(entry, answers[position])
            position += count
            result.saved.append(entry)

    transactions: list[tuple[list[tuple[LedgerEntry, int]], list[tuple[Any, ...]]]] = [([], [])]
    for entry in entries:
        entry.updated_at = now
        # Index rows created, not upserted: an upsert makes the service look the row up first (Azurite: a second
        # search of its index per row). A row indexed already (a run retried after a failure) fails the transaction:
        # its entries are then saved one by one, each with its index rows upserted.
        ops = _operations(entry, index_as="create")
        if len(transactions[-1][1]) + len(ops) > MAX_TRANSACTION:
            transactions.append(([], []))
        transactions[-1][0].append((entry, len(ops)))  # (entry, how many operations it takes)
        transactions[-1][1].extend(ops)
    # Every transaction settles before one's failure is raised: a caller putting entries back after a failure must
    # not race a transaction still landing.
    answers = await asyncio.gather(
        *(submit(chunk, operations) for chunk, operations in transactions if chunk), return_exceptions=True
    )
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return result


def _saved(entry: LedgerEntry, answer: Any) -> None:
    entry.etag = answer.get("etag") if isinstance(answer, dict) else None
    entry.indexed |= {(side, r) for side in Side if (r := entry.side(side).row_id)}


async def delete_many(ledger: Ledger, entries: Iterable[LedgerEntry]) -> None:
    """Remove entries (and their id-index rows) a run saved for writes that then failed: the ledger never claims a
    row that is not there. Unconditional per entry: the run created them a moment ago."""
    table = ledger.table("ledger")
    for entry in entries:
        keys = [key_text(entry.key)] + [index_row_key(s, r) for s in Side if (r := entry.side(s).row_id)]
        for row_key in keys:
            try:
                await table.delete_entity(entry.map, row_key)
            except ResourceNotFoundError:
                pass


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


async def _query(table: TableClient, condition: str) -> AsyncIterator[dict[str, Any]]:
    """The entities matching an OData `$filter`, page by page (the service's continuation headers), as plain
    JSON: the SDK's per-entity conversion (type inference, metadata objects) cost more than the rest of reading a
    100,000-entry ledger. Each entity carries its `odata.etag`."""
    params = {"$filter": condition}
    while True:
        request = HttpRequest(
            "GET", f"{table.url}/{table.table_name}()", params=params,
            headers={"x-ms-version": table.api_version, "DataServiceVersion": "3.0",
                     "Accept": "application/json;odata=minimalmetadata"},
        )  # fmt: skip
        response = await table._client.send_request(request, stream=True)
        content = await response.read()
        if response.status_code != 200:
            raise HttpResponseError(f"{response.status_code} querying {table.table_name}: {content[:300]!r}")
        for entity in json.loads(content).get("value", []):
            yield entity
        next_partition = response.headers.get("x-ms-continuation-NextPartitionKey")
        if not next_partition:
            return
        params = {"$filter": condition, "NextPartitionKey": next_partition}
        if next_row := response.headers.get("x-ms-continuation-NextRowKey"):
            params["NextRowKey"] = next_row


# The id-index rows' RowKeys (`id:<side>:<row id>`) sort between these two: ";" is the character after ":".
_INDEX_ROWS = ("id:", "id;")
READS_IN_FLIGHT = 8


def key_ranges(after: str | None, bounds: Iterable[str]) -> list[tuple[str | None, bool, str | None]]:
    """The RowKey ranges (low, low inclusive, high exclusive; None: open) a map's entries are read in: from `after`
    (exclusive), cut at `bounds`, the id-index rows left out."""
    cuts = sorted({b for b in bounds if after is None or b > after} | {b for b in _INDEX_ROWS if after is None or
                                                                       b > after})  # fmt: skip
    lows: list[tuple[str | None, bool]] = [(after, False), *((c, True) for c in cuts)]
    highs: list[str | None] = [*cuts, None]
    return [(low, inclusive, high) for (low, inclusive), high in zip(lows, highs, strict=True)
            if low != _INDEX_ROWS[0]]  # fmt: skip


def _condition(map_name: str, low: str | None, inclusive: bool, high: str | None) -> str:
    condition = f"PartitionKey eq {_literal(map_name)}"
    if low is not None:
        condition += f" and RowKey {'ge' if inclusive else 'gt'} {_literal(low)}"
    if high is not None:
        condition += f" and RowKey lt {_literal(high)}"
    return condition


async def load_map(
    ledger: Ledger, map_name: str, after: str | None = None, bounds: Iterable[str] = ()
) -> tuple[dict[str, LedgerEntry], dict[tuple[Side, str], str]]:
    """Every entry of a map (by key text) and its id index ((side, lower-cased row id) → key text), the index
    worked out from the entries (each names its rows' ids) rather than read: half the entities.
    `after`: only rows whose RowKey sorts after it (a continued run needs no entry of a key it has done).
    `bounds`: key texts to cut the partition at (e.g. a sample of the keys the run read): the ranges are read in
    parallel, each a query of about one page — a partition read page after page makes the service find and sort
    what is left of it again for every continuation (Azurite does exactly that: quadratic on a large map)."""
    await ledger.ensure_tables()
    table = ledger.table("ledger")
    gate = asyncio.Semaphore(READS_IN_FLIGHT)

    async def one(low: str | None, inclusive: bool, high: str | None) -> list[dict[str, Any]]:
        async with gate:
            return [e async for e in _query(table, _condition(map_name, low, inclusive, high))]

    pages = await asyncio.gather(*(one(*r) for r in key_ranges(after, bounds)))
    entries: dict[str, LedgerEntry] = {}
    index: dict[tuple[Side, str], str] = {}
    for page in pages:
        for entity in page:
            row_key = str(entity["RowKey"])
            entry = LedgerEntry.model_validate_json(entity["Entry"])
            entry.etag = entity["odata.etag"]
            entry.indexed = {(s, r) for s in Side if (r := entry.side(s).row_id)}
            entries[row_key] = entry
            for side, row_id in entry.indexed:
                # Two entries can name one row (its key columns were edited: apply made a second entry); the index
                # apply keeps points at the newer, and so does this one.
                known = index.get((side, row_id.lower()))
                if known is None or entries[known].updated_at <= entry.updated_at:
                    index[(side, row_id.lower())] = row_key
    return entries, index
