"""The ledger in Azure Table Storage (`azure.data.tables.aio`): synced rows, id indexes, conflicts, errors, map
state and held changes. Every ledger update is conditional on the entity's ETag: a concurrent writer makes it
raise `LedgerConflict`, and apply re-reads and decides again."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables.aio import TableServiceClient

from shared.events.model import ChangeEvent
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry, key_text
from shared.maps.model import Side

TABLES = ("ledger", "ledgerindex", "conflicts", "errors", "mapstate", "held")


class LedgerConflict(RuntimeError):
    """The ledger entry changed since it was read."""


def _safe(text: str) -> str:
    return "".join(c if c not in "/\\#?" and ord(c) >= 32 else "_" for c in text)


class Ledger:
    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self._prefix = prefix
        self._ready = False

    def _table(self, name: str) -> Any:
        return self._service.get_table_client(f"{self._prefix}{name}")

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
        try:
            entity = await self._table("ledger").get_entity(map_name, key_text(key))
        except ResourceNotFoundError:
            return None
        entry = LedgerEntry.model_validate_json(entity["Entry"])
        entry.etag = entity.metadata["etag"]
        return entry

    async def save(self, entry: LedgerEntry) -> LedgerEntry:
        """Create (no ETag) or update (ETag must still match); `LedgerConflict` otherwise."""
        await self.ensure_tables()
        entry.updated_at = datetime.now(UTC)
        entity = {"PartitionKey": entry.map, "RowKey": key_text(entry.key), "Entry": entry.model_dump_json()}
        table = self._table("ledger")
        try:
            if entry.etag is None:
                meta = await table.create_entity(entity)
            else:
                meta = await table.update_entity(
                    entity, mode="replace", etag=entry.etag, match_condition=MatchConditions.IfNotModified
                )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise LedgerConflict(str(exc)) from None
        entry.etag = meta.get("etag")
        for side in Side:
            row_id = entry.side(side).row_id
            if row_id:
                await self.index(entry.map, side, row_id, entry.key)
        return entry

    async def index(self, map_name: str, side: Side, row_id: str, key: dict[str, Any]) -> None:
        await self._table("ledgerindex").upsert_entity(
            {"PartitionKey": f"{map_name}:{side}", "RowKey": _safe(row_id.lower()), "Key": json.dumps(key)}
        )

    async def key_for(self, map_name: str, side: Side, row_id: str) -> dict[str, Any] | None:
        """The integration key of a row known by its Dataverse GUID or F&O virtual id."""
        await self.ensure_tables()
        try:
            entity = await self._table("ledgerindex").get_entity(f"{map_name}:{side}", _safe(row_id.lower()))
        except ResourceNotFoundError:
            return None
        key: dict[str, Any] = json.loads(entity["Key"])
        return key

    # --- conflicts and errors -------------------------------------------------------------------------------------

    async def record_conflict(self, record: ConflictRecord) -> None:
        await self.ensure_tables()
        await self._table("conflicts").create_entity(
            {"PartitionKey": record.map, "RowKey": f"{time.time_ns():020d}-{record.event_id}",
             "Status": record.status, "Record": record.model_dump_json()}
        )  # fmt: skip

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
            {"PartitionKey": record.map, "RowKey": _safe(record.event_id), "At": record.at,
             "Record": record.model_dump_json()}
        )  # fmt: skip

    async def error_for(self, map_name: str, event_id: str) -> ErrorRecord | None:
        await self.ensure_tables()
        try:
            entity = await self._table("errors").get_entity(map_name, _safe(event_id))
        except ResourceNotFoundError:
            return None
        return ErrorRecord.model_validate_json(entity["Record"])

    async def errors(self, map_name: str | None = None, since: datetime | None = None) -> list[ErrorRecord]:
        await self.ensure_tables()
        found = [ErrorRecord.model_validate_json(e["Record"]) async for e in self._table("errors").list_entities()]
        return [e for e in found if (map_name is None or e.map == map_name) and (since is None or e.at >= since)]

    async def recent_error_count(self, map_name: str, minutes: float) -> int:
        return len(await self.errors(map_name, datetime.now(UTC) - timedelta(minutes=minutes)))

    # --- map state and held changes -------------------------------------------------------------------------------

    async def map_state(self, map_name: str) -> dict[str, Any]:
        await self.ensure_tables()
        try:
            entity = await self._table("mapstate").get_entity("map", map_name)
        except ResourceNotFoundError:
            return {"state": "running"}
        return {"state": entity["State"], "reason": entity.get("Reason", ""), "since": entity.get("Since")}

    async def set_map_state(self, map_name: str, state: str, reason: str = "") -> None:
        await self.ensure_tables()
        await self._table("mapstate").upsert_entity(
            {"PartitionKey": "map", "RowKey": map_name, "State": state, "Reason": reason,
             "Since": datetime.now(UTC).isoformat()}
        )  # fmt: skip

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
