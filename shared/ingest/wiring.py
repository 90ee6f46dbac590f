"""Builds the ingest service from settings, the maps and the publisher (called by the composition root)."""

from __future__ import annotations

from pathlib import Path

from shared.bus.publisher import ServiceBusChangePublisher
from shared.events.bindings import DEFAULT_BINDINGS, load_bindings
from shared.events.model import ChangeEvent
from shared.ingest.enums import VirtualTableEnums
from shared.ingest.ordering import ordering_key
from shared.ingest.service import EntityFilter, IngestService
from shared.maps.loader import MapSet
from shared.settings import Settings
from shared.sync.plan import TAG_PREFIX


def build_ingest_service(
    settings: Settings, maps: MapSet, publisher: ServiceBusChangePublisher, enums: VirtualTableEnums | None = None
) -> IngestService:
    path = Path(settings.business_events_file) if settings.business_events_file else DEFAULT_BINDINGS
    return IngestService(
        publisher,
        load_bindings(path),
        catalog=maps,
        entity_filter=mapped_entities(maps),
        ordering=lambda event: ordering_key(event, maps),
        enums=enums,
    )


def mapped_entities(maps: MapSet) -> EntityFilter:
    """Keeps the changes an enabled map reads; the rest are acknowledged as ignored. So is the notification of the
    bridge's own write (its Dataverse `tag`, `shared.sync.plan.TAG_PREFIX`): apply would skip it unread, so it is not
    queued at all — a Service Bus message, a delivery and an apply invocation fewer for every write into Dataverse."""

    def keep(event: ChangeEvent) -> str | None:
        if event.write_tag and event.write_tag.startswith(TAG_PREFIX):
            return "the bridge's own write (tag)"
        if maps.reading(event.source, event.entity):
            return None
        return f"no enabled table map reads {event.source} {event.entity}"

    return keep
