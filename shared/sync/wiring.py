"""Builds the process's one apply service, and turns its `Retry` into a scheduled message."""

from __future__ import annotations

from shared.clients import get_clients
from shared.connectors.wiring import get_connectors
from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord
from shared.ledger.tables import Ledger
from shared.sync.control import MapControl, MapGate
from shared.sync.rows import DataverseRows, FnoRows
from shared.sync.service import ApplyService, Outcome, PermanentFailure, Retry
from shared.wiring import get_maps, get_publisher

MAX_ATTEMPTS = 12  # scheduled retries of one change before it goes to the error log (about an hour of backoff)

_service: ApplyService | None = None
_ledger: Ledger | None = None


def get_ledger() -> Ledger:
    """One per process: it creates its tables once, on first use."""
    global _ledger
    if _ledger is None:
        _ledger = Ledger(get_clients().tables)
    return _ledger


def get_apply_service() -> ApplyService:
    global _service
    if _service is None:
        maps = get_maps()
        connectors = get_connectors()
        tables = {name: c.map for name, c in maps.maps.items()}
        _service = ApplyService(
            maps, get_ledger(), DataverseRows(connectors.dataverse, tables), FnoRows(connectors.fno),
            before_first=MapGate(MapControl.default).ensure,
        )  # fmt: skip
    return _service


async def apply_message(event: ChangeEvent, delivery_count: int, attempt: int) -> list[Outcome]:
    """Apply one queued change; a `Retry` re-schedules it (the session moves on meanwhile)."""
    service = get_apply_service()
    try:
        return await service.handle(event, delivery_count)
    except Retry as retry:
        if attempt >= MAX_ATTEMPTS:
            maps = service.maps.reading(service.maps_side(event), event.entity)
            for compiled in maps:
                await service.ledger.record_error(
                    ErrorRecord(map=compiled.map.name, event_id=event.event_id, event=event.model_dump(mode="json"),
                                request="", message=f"gave up after {attempt} retries: {retry.reason}")
                )  # fmt: skip
            raise PermanentFailure(retry.reason) from None
        delay = min(retry.after * (1.5**attempt), 300.0)
        await get_publisher().schedule(event, delay, attempt + 1)
        return [Outcome("-", "deferred", retry.reason)]
