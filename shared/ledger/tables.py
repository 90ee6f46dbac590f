"""The ledger in Azure Table Storage (`azure.data.tables.aio`): synced rows, id indexes, conflicts, errors, map
state and held changes. Every ledger update is conditional on the entity's ETag: a concurrent writer makes it
raise `LedgerConflict`, and apply re-reads and decides again."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.events.model import ChangeEvent
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry, from_sync_run, key_text
from shared.ledger.wire import TableRequestFailed, read_entity, transact
from shared.maps.model import Side

MAX_TRANSACTION = 100  # operations in one entity-group transaction
TABLES = ("ledger", "conflicts", "errors", "mapstate", "held")
HOLDING_STATES = ("paused", "invalid")  # invalid: the map failed its check against the apps' metadata


class LedgerConflict(RuntimeError):
    """The ledger entry changed since it was read."""


_UNSAFE = re.compile(r"[/\\#?\x00-\x1f]")  # not allowed in a RowKey


def safe_row_key(text: str) -> str:
    return _UNSAFE.sub("_", text)


def index_row_key(side: Side, row_id: str) -> str:
    """Index rows share the map's partition with the entries; an integration key's RowKey always has `=`."""
    return f"id:{side}:{safe_row_key(row_id.lower())}"


def index_entity(map_name: str, side: Side, row_id: str, key: dict[str, Any]) -> dict[str, Any]:
    return {"PartitionKey": map_name, "RowKey": index_row_key(side, row_id), "Key": json.dumps(key)}


IfNotModified = MatchConditions.IfNotModified


class Ledger:
    def __init__(self, service: TableServiceClient, prefix: str = "", running_ttl: float = 2.0) -> None:
        self._service = service
        self._prefix = prefix
        self._ready = False
        self._tables: dict[str, Any] = {}
        # A map seen running is trusted for a moment (one read per event would double apply's Table round trips);
        # a paused map is always re-read, so a resume is never missed and held changes are never held again.
        self._running_ttl = running_ttl
        self._running_until: dict[str, float] = {}
        self._state_writes: dict[str, int] = {}

    def table(self, name: str) -> Any:
        """The Table Storage client of one of the ledger's tables (bulk writes, `shared/ledger/bulk.py`)."""
        return self._table(name)

    def _table(self, name: str) -> Any:
        if name not in self._tables:
            self._tables[name] = self._service.get_table_client(f"{self._prefix}{name}")
        return self._tables[name]

    async def ensure_tables(self) -> None:
        if self._ready:
            return
        for name in TABLES:
            try:
                await self._service.create_table(f"{self._prefix}{name}")
            except ResourceExistsError:
                pass
        self._ready = True

    # --- rows -----------------------------------------------------------------------------------------------------

    async def get(self, map_name: str, key: dict[str, Any]) -> LedgerEntry | None:
        await self.ensure_tables()
        entity = await read_entity(self._table("ledger"), map_name, key_text(key))
        if entity is None:
            return None
        entry = LedgerEntry.model_validate_json(entity["Entry"])
        entry.etag = entity["etag"]
        entry.indexed = {(side, row_id) for side in Side if (row_id := entry.side(side).row_id)}
        return entry

    def _operations(self, entry: LedgerEntry) -> tuple[list[tuple[Any, ...]], list[tuple[Side, str]]]:
        """The entry's write (create without an ETag, else a replace that must still match it) and the id index rows
        it learned, which go in the same transaction (one partition per map) so the index never lags the entry."""
        entry.updated_at = datetime.now(UTC)
        entity = {"PartitionKey": entry.map, "RowKey": key_text(entry.key), "Entry": entry.model_dump_json()}
        write: tuple[Any, ...] = (
            ("create", entity)
            if entry.etag is None
            else ("update", entity, {"mode": "replace", "etag": entry.etag, "match_condition": IfNotModified})
        )
        new = [
            (side, row_id)
            for side in Side
            if (row_id := entry.side(side).row_id) and (side, row_id) not in entry.indexed
        ]
        index = [("upsert", index_entity(entry.map, side, row_id, entry.key)) for side, row_id in new]
        return [write, *index], new

    async def save(self, entry: LedgerEntry) -> LedgerEntry:
        """Create (no ETag) or update (ETag must still match); `LedgerConflict` otherwise."""
        await self.ensure_tables()
        operations, new = self._operations(entry)
        try:
            results = await transact(self._table("ledger"), operations)
        except TableRequestFailed as exc:
            if exc.conflict:
                raise LedgerConflict(str(exc)) from None
            raise
        entry.etag = results[0].get("etag")
        entry.indexed |= set(new)
        return entry

    async def save_many(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry | Exception]:
        """Several entries in entity-group transactions (one per map's partition, at most 100 operations each:
        Microsoft Learn, "Performing entity group transactions"). A transaction is all or nothing, so when one
        fails its entries are saved one by one: each then succeeds or answers its own `LedgerConflict` or other error
        (too large, a 5xx), so one entry's failure never sinks the others."""
        await self.ensure_tables()
        out: list[LedgerEntry | Exception] = list(entries)
        groups: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            groups.setdefault(entry.map, []).append(i)
        for members in groups.values():
            chunk: list[int] = []
            size = 0
            planned = {i: self._operations(entries[i]) for i in members}
            chunks: list[list[int]] = []
            for i in members:
                n = len(planned[i][0])
                if chunk and (size + n > MAX_TRANSACTION or key_text(entries[i].key) in
                              {key_text(entries[j].key) for j in chunk}):  # fmt: skip
                    chunks.append(chunk)
                    chunk, size = [], 0
                chunk.append(i)
                size += n
            if chunk:
                chunks.append(chunk)
            for part in chunks:
                operations = [op for i in part for op in planned[i][0]]
                try:
                    results = await transact(self._table("ledger"), operations)
                except TableRequestFailed:
                    for i in part:
                        try:
                            out[i] = await self.save(entries[i])
                        except Exception as exc:  # its own failure, not its neighbours'
                            out[i] = exc
                    continue
                position = 0
                for i in part:
                    entries[i].etag = results[position].get("etag")
                    entries[i].indexed |= set(planned[i][1])
                    position += len(planned[i][0])
        return out

    async def key_for(self, map_name: str, side: Side, row_id: str) -> dict[str, Any] | None:
        """The integration key of a row known by its Dataverse GUID or F&O virtual id."""
        await self.ensure_tables()
        entity = await read_entity(self._table("ledger"), map_name, index_row_key(side, row_id))
        if entity is None:
            return None
        key: dict[str, Any] = json.loads(entity["Key"])
        return key

    # --- conflicts and errors -------------------------------------------------------------------------------------

    async def record_conflict(self, record: ConflictRecord) -> None:
        await self.ensure_tables()
        try:
            await self._table("conflicts").create_entity(
                {"PartitionKey": record.map, "RowKey": record.row_key(), "Status": record.status,
                 "Record": record.model_dump_json()}
            )  # fmt: skip
        except ResourceExistsError:
            pass  # recorded already (a redelivered change): the first record stands, and a person's resolution of it

    async def conflicts(self, map_name: str | None = None) -> list[ConflictRecord]:
        await self.ensure_tables()
        query = (
            self._table("conflicts").list_entities()
            if map_name is None
            else self._table("conflicts").query_entities("PartitionKey eq @m", parameters={"m": map_name})
        )
        return [ConflictRecord.model_validate_json(e["Record"]) async for e in query]

    async def record_error(self, record: ErrorRecord) -> None:
        await self.ensure_tables()
        await self._table("errors").upsert_entity(
            {"PartitionKey": record.map, "RowKey": safe_row_key(record.event_id), "At": record.at,
             "Record": record.model_dump_json(), "Status": "open"}
        )  # fmt: skip

    async def error_for(self, map_name: str, event_id: str) -> ErrorRecord | None:
        await self.ensure_tables()
        try:
            entity = await self._table("errors").get_entity(map_name, safe_row_key(event_id))
        except ResourceNotFoundError:
            return None
        return ErrorRecord.model_validate_json(entity["Record"])

    async def errors(
        self, map_name: str | None = None, since: datetime | None = None, *, unresolved: bool = False
    ) -> list[ErrorRecord]:
        """The error log's records; `unresolved`: only those a person has not resolved or dismissed (the console's
        `Status`), as a sync run's rerun of failed rows and its choice of a full compare want them."""
        await self.ensure_tables()
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if map_name is not None:
            clauses.append("PartitionKey eq @m")
            parameters["m"] = map_name
        if since is not None:
            clauses.append("At ge @since")
            parameters["since"] = since
        table = self._table("errors")
        query = table.query_entities(" and ".join(clauses), parameters=parameters) if clauses else table.list_entities()
        return [
            ErrorRecord.model_validate_json(e["Record"])
            async for e in query
            if not unresolved or (e.get("Status") or "open") in ("open", "replaying")
        ]

    async def recent_error_count(self, map_name: str, minutes: float) -> int:
        """Live sync's errors within the last `minutes`, counting only those since the map was last resumed: errors
        an operator has already seen do not pause it again. A sync run's failed rows are its own report, not a sign
        that live changes fail: they do not count."""
        since = datetime.now(UTC) - timedelta(minutes=minutes)
        state = await self.map_state(map_name)
        if state["state"] == "running" and state.get("since"):
            since = max(since, datetime.fromisoformat(str(state["since"])))
        return sum(not from_sync_run(e.event_id) for e in await self.errors(map_name, since))

    # --- map state and held changes -------------------------------------------------------------------------------

    async def is_paused(self, map_name: str) -> bool:
        """Whether the map's changes are held: paused by an operator or an alert, or invalid (failed its check)."""
        if time.monotonic() < self._running_until.get(map_name, 0.0):
            return False
        return (await self.map_state(map_name))["state"] in HOLDING_STATES

    async def map_state(self, map_name: str) -> dict[str, Any]:
        await self.ensure_tables()
        writes = self._state_writes.get(map_name, 0)  # a read that overlaps a state change must not be cached
        try:
            entity = await self._table("mapstate").get_entity("map", map_name)
        except ResourceNotFoundError:
            state: dict[str, Any] = {"state": "running"}
        else:
            state = {"state": entity["State"], "reason": entity.get("Reason", ""), "since": entity.get("Since")}
            if entity.get("Problems"):
                state["problems"] = json.loads(entity["Problems"])
        if state["state"] == "running" and writes == self._state_writes.get(map_name, 0):
            self._running_until[map_name] = time.monotonic() + self._running_ttl
        else:
            self._running_until.pop(map_name, None)
        return state

    async def set_map_state(
        self, map_name: str, state: str, reason: str = "", problems: list[dict[str, str]] | None = None
    ) -> None:
        await self.ensure_tables()
        self._state_writes[map_name] = self._state_writes.get(map_name, 0) + 1
        self._running_until.pop(map_name, None)
        await self._table("mapstate").upsert_entity(
            {"PartitionKey": "map", "RowKey": map_name, "State": state, "Reason": reason,
             "Since": datetime.now(UTC).isoformat(), "Problems": json.dumps(problems) if problems else ""},
            mode=UpdateMode.REPLACE,
        )  # fmt: skip
        self._state_writes[map_name] += 1
        self._running_until.pop(map_name, None)

    async def hold(self, map_name: str, event: ChangeEvent) -> None:
        await self.ensure_tables()
        await self._table("held").upsert_entity(
            {"PartitionKey": map_name, "RowKey": f"{time.time_ns():020d}-{event.event_id}",
             "Event": event.model_dump_json()}
        )  # fmt: skip

    async def held(self, map_name: str) -> list[tuple[str, ChangeEvent]]:
        """Held changes in the order they arrived."""
        await self.ensure_tables()
        query = self._table("held").query_entities("PartitionKey eq @m", parameters={"m": map_name})
        rows = [(e["RowKey"], ChangeEvent.model_validate_json(e["Event"])) async for e in query]
        return sorted(rows, key=lambda r: r[0])

    async def release(self, map_name: str, row_keys: Sequence[str]) -> None:
        table = self._table("held")
        for row_key in row_keys:
            await table.delete_entity(map_name, row_key)
