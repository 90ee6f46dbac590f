"""Builds the process's one ingest service from settings and the shared clients."""

from __future__ import annotations

from pathlib import Path

from shared.bus.publisher import ServiceBusChangePublisher
from shared.clients import get_clients
from shared.events.bindings import DEFAULT_BINDINGS, load_bindings
from shared.ingest.service import IngestService
from shared.settings import get_settings

_service: IngestService | None = None


def get_ingest_service() -> IngestService:
    global _service
    if _service is None:
        settings = get_settings()
        publisher = ServiceBusChangePublisher(
            get_clients().servicebus, settings.changes_queue, settings.enqueue_timeout_seconds
        )
        path = Path(settings.business_events_file) if settings.business_events_file else DEFAULT_BINDINGS
        _service = IngestService(publisher, load_bindings(path))
    return _service
