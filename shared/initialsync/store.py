"""Sync runs and drift entries in Table Storage, beside the ledger: `syncruns` (one entity per run, the checkpoint),
`drift` (one entity per repaired row, partition = map) and `synctracking` (per map, the Dataverse delta link the
next reconciliation starts from)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from shared.initialsync import checkpoint
from shared.initialsync.model import DriftRecord, RunState
from shared.ledger.model import key_text


class Superseded(RuntimeError):
    """Another step of the run saved its checkpoint since this one read it: two steps of one run at once (a step
    redelivered after a host died, beside its successor). The later save would put back an older state over a newer
    one — a run marked done set `running` again, its chain of steps ended — so the step that finds it stops."""


class RunStore:
    def __init__(self, service: TableServiceClient, prefix: str = "") -> None:
        self._service = service
        self._prefix = prefix
        self._ready = False

    async def _ensure(self) -> None:
        if self._ready:
            return
        for name in ("syncruns", "drift", "synctracking"):
            try:
                await self._service.create_table(f"{self._prefix}{name}")
            except ResourceExistsError:
                pass
        self._ready = True

    async def save(self, run: RunState) -> None:
        """The checkpoint, conditional on the one this step read or saved last (its ETag): `Superseded` when another
        step of the run saved meanwhile. A run never read (just started) is written as it is."""
        await self._ensure()
        run.updated_at = datetime.now(UTC)
        table = self._service.get_table_client(f"{self._prefix}syncruns")
        # Replaced whole: a checkpoint of fewer parts leaves none of an older one behind.
        entity = {"PartitionKey": "run", "RowKey": run.run_id, **checkpoint.encode(run)}
        if run.etag is None:
            saved = await table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        else:
            try:
                saved = await table.update_entity(
                    entity, mode=UpdateMode.REPLACE, etag=run.etag, match_condition=MatchConditions.IfNotModified
                )
            except (HttpResponseError, ResourceNotFoundError) as exc:
                if getattr(exc, "status_code", None) in (404, 409, 412):
                    raise Superseded(run.run_id) from None
                raise
        run.etag = (saved or {}).get("etag") or None

    async def get(self, run_id: str) -> RunState | None:
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}syncruns")
        try:
            entity = await table.get_entity("run", run_id)
        except ResourceNotFoundError:
            return None
        run = checkpoint.decode(entity)
        run.etag = entity.metadata.get("etag")
        return run

    async def save_if_unchanged(self, run: RunState) -> bool:
        """Save `run` only if nobody saved it since it was read (its ETag): False when a step got there first."""
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}syncruns")
        entity = {"PartitionKey": "run", "RowKey": run.run_id, **checkpoint.encode(run)}
        try:
            await table.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=run.etag, match_condition=MatchConditions.IfNotModified
            )
        except (HttpResponseError, ResourceNotFoundError) as exc:
            if getattr(exc, "status_code", None) in (404, 409, 412):
                return False
            raise
        return True  # (the ETag is not kept: `report` saves once and returns)

    async def runs(self) -> list[RunState]:
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}syncruns")
        return [checkpoint.decode(e) async for e in table.list_entities()]

    async def delta_link(self, map_name: str) -> str | None:
        """Where the last finished reconciliation of `map_name` left Dataverse's change tracking (None: none yet)."""
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}synctracking")
        try:
            entity = await table.get_entity("dataverse", map_name)
        except ResourceNotFoundError:
            return None
        return str(entity["DeltaLink"]) or None

    async def save_delta_link(self, map_name: str, link: str | None) -> None:
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}synctracking")
        await table.upsert_entity({"PartitionKey": "dataverse", "RowKey": map_name, "DeltaLink": link or ""})

    async def record_drift(self, records: list[DriftRecord]) -> None:
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}drift")
        for record in records:
            row_key = f"{time.time_ns():020d}-{key_text(record.key)}"[:512].replace("/", "_")
            await table.create_entity({"PartitionKey": record.map, "RowKey": row_key,
                                       "Record": checkpoint.drift_json(record)})  # fmt: skip

    async def drift(self, map_name: str | None = None) -> list[DriftRecord]:
        await self._ensure()
        table = self._service.get_table_client(f"{self._prefix}drift")
        query = (
            table.list_entities()
            if map_name is None
            else table.query_entities("PartitionKey eq @m", parameters={"m": map_name})
        )
        return [DriftRecord.model_validate_json(e["Record"]) async for e in query]
