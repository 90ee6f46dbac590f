"""The console's reads and writes over the ledger's tables (`errors`, `conflicts`, `held`, `mapstate`) and its own
(`opsminutes`: per-map outcome counts in 10-second buckets; `opsalerts`: alerts that fired; `opswaiting`: changes
queued or deferred, `shared.ops.waiting`).

The ledger's entries keep their shape: an error's or conflict's operator state (status, who resolved it, when, why)
is merged into the same Table entity as extra properties, so the apply core's writes and ours never collide.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.ledger.model import ConflictRecord, ErrorRecord
from shared.ledger.tables import safe_row_key
from shared.ops.alerts import Alert
from shared.ops.ids import entry_id

OWN_TABLES = ("opsminutes", "opsalerts", "opswaiting")
LEDGER_TABLES = ("errors", "conflicts", "held", "mapstate", "ledger")
BUCKET_SECONDS = 10
MAX_PAGE = 500
ERROR_STATUSES = ("open", "replaying", "resolved", "dismissed")
CONFLICT_STATUSES = ("open", "resolved")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    def as_json(self, name: str) -> dict[str, Any]:
        pages = max(1, -(-self.total // self.per_page))
        return {name: self.items, "total": self.total, "page": self.page, "per_page": self.per_page, "pages": pages}


@dataclass(frozen=True)
class Filter:
    map: str | None = None
    status: str | None = None  # None: every status
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    per_page: int = 100


def error_json(entity: dict[str, Any]) -> dict[str, Any]:
    record = ErrorRecord.model_validate_json(entity["Record"])
    return {
        "id": entry_id(entity["PartitionKey"], entity["RowKey"]),
        "map": record.map,
        "event_id": record.event_id,
        "status": entity.get("Status") or "open",
        "at": record.at.isoformat(),
        "message": record.message,
        "http_status": record.status,
        "request": record.request,
        "event": record.event,
        "replays": int(entity.get("Replays") or 0),
        "resolved_by": entity.get("ResolvedBy"),
        "resolved_at": entity.get("ResolvedAt"),
        "note": entity.get("Note"),
    }


def conflict_json(entity: dict[str, Any]) -> dict[str, Any]:
    record = ConflictRecord.model_validate_json(entity["Record"])
    status = entity.get("Status") or record.status
    return {
        "id": entry_id(entity["PartitionKey"], entity["RowKey"]),
        **record.model_dump(mode="json"),
        "status": status,
        "resolved_by": entity.get("ResolvedBy"),
        "resolved_at": entity.get("ResolvedAt"),
        "resolution": json.loads(entity["Resolution"]) if entity.get("Resolution") else None,
    }


def paged(items: list[dict[str, Any]], f: Filter) -> Page:
    per_page = max(1, min(f.per_page, MAX_PAGE))
    page = max(1, f.page)
    items.sort(key=lambda i: str(i["at"]), reverse=True)  # newest first
    start = (page - 1) * per_page
    return Page(items[start : start + per_page], len(items), page, per_page)


class OpsStore:
    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self._prefix = prefix
        self._tables: dict[str, Any] = {}
        self._ready = False

    def table(self, name: str) -> Any:
        if name not in self._tables:
            self._tables[name] = self._service.get_table_client(f"{self._prefix}{name}")
        return self._tables[name]

    async def ensure(self) -> None:
        if self._ready:
            return
        for name in (*LEDGER_TABLES, *OWN_TABLES):
            try:
                await self._service.create_table(f"{self._prefix}{name}")
            except ResourceExistsError:
                pass
        self._ready = True

    async def _query(self, table: str, clauses: list[str], parameters: dict[str, Any]) -> list[dict[str, Any]]:
        await self.ensure()
        t = self.table(table)
        query = t.query_entities(" and ".join(clauses), parameters=parameters) if clauses else t.list_entities()
        return [dict(e) async for e in query]

    # --- errors ---------------------------------------------------------------------------------------------------

    async def error_entities(self, f: Filter) -> list[dict[str, Any]]:
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if f.map:
            clauses.append("PartitionKey eq @m")
            parameters["m"] = f.map
        if f.since:
            clauses.append("At ge @since")
            parameters["since"] = f.since
        if f.until:
            clauses.append("At le @until")
            parameters["until"] = f.until
        found = await self._query("errors", clauses, parameters)
        # A replay's own failure is folded into the original's entry; its row only guards redelivery.
        found = [e for e in found if e.get("Status") != "merged"]
        return [e for e in found if f.status is None or (e.get("Status") or "open") == f.status]

    async def errors(self, f: Filter) -> Page:
        return paged([error_json(e) for e in await self.error_entities(f)], f)

    async def error(self, partition: str, row: str) -> dict[str, Any] | None:
        await self.ensure()
        try:
            return dict(await self.table("errors").get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    async def error_by_event(self, map_name: str, event_id: str) -> dict[str, Any] | None:
        return await self.error(map_name, safe_row_key(event_id))

    async def mark_error(self, partition: str, row: str, **props: Any) -> None:
        await self.ensure()
        entity = {"PartitionKey": partition, "RowKey": row, **{k: v for k, v in props.items() if v is not None}}
        await self.table("errors").upsert_entity(entity, mode=UpdateMode.MERGE)

    async def replace_error_record(self, partition: str, row: str, record: ErrorRecord, **props: Any) -> None:
        await self.mark_error(partition, row, Record=record.model_dump_json(), At=record.at, **props)

    # --- conflicts ------------------------------------------------------------------------------------------------

    async def conflicts(self, f: Filter) -> Page:
        clauses: list[str] = []
        parameters: dict[str, Any] = {}
        if f.map:
            clauses.append("PartitionKey eq @m")
            parameters["m"] = f.map
        if f.since:  # RowKeys start with the record time in nanoseconds
            clauses.append("RowKey ge @since")
            parameters["since"] = f"{int(f.since.timestamp() * 1e9):020d}"
        if f.until:
            clauses.append("RowKey le @until")
            parameters["until"] = f"{int(f.until.timestamp() * 1e9):020d}~"
        items = [conflict_json(e) for e in await self._query("conflicts", clauses, parameters)]
        return paged([i for i in items if f.status is None or i["status"] == f.status], f)

    async def conflict(self, partition: str, row: str) -> dict[str, Any] | None:
        await self.ensure()
        try:
            return dict(await self.table("conflicts").get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    async def mark_conflict(self, partition: str, row: str, **props: Any) -> None:
        await self.ensure()
        entity = {"PartitionKey": partition, "RowKey": row, **props}
        await self.table("conflicts").upsert_entity(entity, mode=UpdateMode.MERGE)

    async def open_counts(self, map_name: str) -> tuple[int, int]:
        errors = await self.error_entities(Filter(map=map_name, status="open"))
        conflicts = await self._query("conflicts", ["PartitionKey eq @m"], {"m": map_name})
        return len(errors), sum(1 for c in conflicts if (c.get("Status") or "resolved") == "open")

    # --- per-map figures ------------------------------------------------------------------------------------------

    async def write_buckets(self, rows: Iterable[dict[str, Any]]) -> None:
        await self.ensure()
        table = self.table("opsminutes")
        for row in rows:
            await table.upsert_entity(row, mode=UpdateMode.REPLACE)

    async def buckets(self, map_name: str, since: float) -> list[dict[str, Any]]:
        return await self._query(
            "opsminutes", ["PartitionKey eq @m", "RowKey ge @since"], {"m": map_name, "since": f"{int(since):012d}"}
        )

    # --- alerts ---------------------------------------------------------------------------------------------------

    async def record_alert(self, alert: Alert) -> None:
        await self.ensure()
        inverted = f"{10**19 - time.time_ns():020d}"  # newest first within the map's partition
        await self.table("opsalerts").upsert_entity(
            {"PartitionKey": alert.map, "RowKey": inverted, "Alert": alert.model_dump_json()}
        )

    async def last_alert(self, map_name: str) -> Alert | None:
        await self.ensure()
        query = self.table("opsalerts").query_entities(
            "PartitionKey eq @m", parameters={"m": map_name}, results_per_page=1
        )
        async for entity in query:
            return Alert.model_validate_json(entity["Alert"])
        return None


def now() -> datetime:
    return datetime.now(UTC)
