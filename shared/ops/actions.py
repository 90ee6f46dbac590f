"""What an operator does about an error: replay, dismiss (a parked conflict: `shared.ops.resolve`). Every action
records who did it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from shared.bus.publisher import ChangePublisher
from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord, from_sync_run
from shared.ops.ids import replay_event_id
from shared.ops.store import Filter, OpsStore, error_json, now


class NotFoundError(LookupError):
    """No such error or conflict entry."""


class InvalidAction(ValueError):
    """The action does not fit the entry (already resolved, a field missing, …): a 409 or 400 with this message."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class FieldChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    take: Literal["fno", "dataverse", "value"]
    value: JsonValue = None


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: dict[str, FieldChoice]


@dataclass
class ErrorActions:
    store: OpsStore
    publisher: ChangePublisher

    async def replay(self, partition: str, row: str, operator: str) -> dict[str, Any]:
        """Queue the original change again; the outcome (resolved, or open with the new message) is written back
        by the apply observer (`shared.ops.observer`) in whichever process applies it."""
        entity = await self.store.error(partition, row)
        if entity is None or entity.get("Status") == "merged":
            raise NotFoundError("no such error")
        status = entity.get("Status") or "open"
        if status in ("resolved", "dismissed"):
            raise InvalidAction(f"the error is already {status}")
        record = ErrorRecord.model_validate_json(entity["Record"])
        if from_sync_run(record.event_id):
            run_id = record.event.get("run_id") or "<run id>"
            raise InvalidAction(
                f"a row sync run {run_id} could not write, not a change: once its cause is fixed, POST"
                f" /api/sync/{run_id}/rerun-failed writes it (with the run's other failed rows)"
            )
        attempt = int(entity.get("Replays") or 0) + 1
        event = ChangeEvent.model_validate(record.event)
        await self.publisher.publish([event.model_copy(update={"event_id": replay_event_id(event.event_id, attempt)})])
        await self.store.mark_error(
            partition, row, Status="replaying", Replays=attempt, ReplayedBy=operator, ReplayedAt=now().isoformat()
        )
        return error_json(entity | {"Status": "replaying", "Replays": attempt})

    async def replay_map(self, map_name: str, operator: str) -> list[dict[str, Any]]:
        """Every open error of live sync's (a sync run's failed rows are rerun by the run: `replay`)."""
        entities = await self.store.error_entities(Filter(map=map_name, status="open"))
        live = [e for e in entities if not from_sync_run(e["RowKey"])]
        return [await self.replay(e["PartitionKey"], e["RowKey"], operator) for e in live]

    async def dismiss(self, partition: str, row: str, reason: str, operator: str) -> dict[str, Any]:
        if not reason.strip():
            raise InvalidAction("a reason is required to dismiss an error", status=400)
        entity = await self.store.error(partition, row)
        if entity is None or entity.get("Status") == "merged":
            raise NotFoundError("no such error")
        props = {"Status": "dismissed", "Note": reason.strip(), "ResolvedBy": operator, "ResolvedAt": now().isoformat()}
        await self.store.mark_error(partition, row, **props)
        return error_json(entity | props)
