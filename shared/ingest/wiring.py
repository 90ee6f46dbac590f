"""Builds the process's one ingest service from settings and the shared clients."""

from __future__ import annotations

from pathlib import Path

from shared.events.bindings import DEFAULT_BINDINGS, load_bindings
from shared.events.model import ChangeEvent
from shared.ingest.ordering import ordering_key
from shared.ingest.service import EntityFilter, IngestService
from shared.maps.loader import MapSet
from shared.maps.model import Side
from shared.settings import get_settings
from shared.wiring import get_maps, get_publisher

_service: IngestService | None = None
# The tag of a sync run's own Dataverse writes (shared/initialsync/io.py): apply would skip them as echoes anyway;
# dropping them here spares a bulk run a queued message and an apply per row it wrote.
SYNC_RUN_TAG = "bridge:sync:"


def get_ingest_service() -> IngestService:
    global _service
    if _service is None:
        settings = get_settings()
        path = Path(settings.business_events_file) if settings.business_events_file else DEFAULT_BINDINGS
        maps = get_maps()
        _service = IngestService(
            get_publisher(),
            load_bindings(path),
            catalog=maps,
            entity_filter=mapped_entities(maps),
            ordering=lambda event: ordering_key(event, maps),
        )
    return _service


def mapped_entities(maps: MapSet) -> EntityFilter:
    """Keeps the changes an enabled map reads, except a sync run's own writes; the rest are acknowledged as
    ignored."""

    def keep(event: ChangeEvent) -> str | None:
        if event.write_tag and event.write_tag.startswith(SYNC_RUN_TAG):
            return "the bridge's own write (a sync run): an echo"
        side = Side.FNO if event.source == "fno" else Side.DATAVERSE
        if maps.reading(side, event.entity):
            return None
        return f"no enabled table map reads {event.source} {event.entity}"

    return keep
