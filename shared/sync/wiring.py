"""Builds the process's one apply service, and turns its `Retry` into a scheduled message."""

from __future__ import annotations

from pathlib import Path

from shared.bus.publisher import ServiceBusChangePublisher
from shared.clients import get_clients
from shared.connectors.errors import ValidationFailed
from shared.connectors.wiring import get_connectors
from shared.events.model import ChangeEvent
from shared.ledger.model import ErrorRecord
from shared.ledger.tables import Ledger
from shared.maps.loader import MAPS_DIR, MapSet, load_maps
from shared.settings import get_settings
from shared.sync.rows import DataverseRows, FnoRows
from shared.sync.service import ApplyService, Outcome, PermanentFailure, Retry

MAX_ATTEMPTS = 12  # scheduled retries of one change before it goes to the error log (about an hour of backoff)

_service: ApplyService | None = None
_publisher: ServiceBusChangePublisher | None = None
_maps: MapSet | None = None


def get_maps() -> MapSet:
    global _maps
    if _maps is None:
        _maps = load_maps(sorted(Path(get_settings().maps_dir or MAPS_DIR).glob("*.yaml")))
    return _maps


def get_ledger() -> Ledger:
    return Ledger(get_clients().tables)


def get_publisher() -> ServiceBusChangePublisher:
    global _publisher
    if _publisher is None:
        settings = get_settings()
        _publisher = ServiceBusChangePublisher(
            get_clients().servicebus, settings.changes_queue, settings.enqueue_timeout_seconds
        )
    return _publisher


def get_apply_service() -> ApplyService:
    global _service
    if _service is None:
        maps = get_maps()
        connectors = get_connectors()
        tables = {name: c.map for name, c in maps.maps.items()}
        _service = ApplyService(
            maps, get_ledger(), DataverseRows(connectors.dataverse, tables), FnoRows(connectors.fno)
        )
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


__all__ = ["ValidationFailed", "apply_message", "get_apply_service", "get_ledger", "get_maps", "get_publisher"]
