"""What ingest and apply share in one process: the loaded map set and the one change publisher."""

from __future__ import annotations

from pathlib import Path

from shared.bus.publisher import ServiceBusChangePublisher
from shared.clients import get_clients
from shared.maps.loader import MAPS_DIR, MapSet, load_maps
from shared.settings import get_settings

_publisher: ServiceBusChangePublisher | None = None
_maps: MapSet | None = None


def get_maps() -> MapSet:
    global _maps
    if _maps is None:
        _maps = load_maps(sorted(Path(get_settings().maps_dir or MAPS_DIR).glob("*.yaml")))
    return _maps


def get_publisher() -> ServiceBusChangePublisher:
    global _publisher
    if _publisher is None:
        from shared.ops.wiring import queue_watcher

        settings = get_settings()
        _publisher = ServiceBusChangePublisher(
            get_clients().servicebus, settings.changes_queue, settings.enqueue_timeout_seconds, settings.session_lanes,
            watcher=queue_watcher(),  # the console's lag: what is queued per map
        )  # fmt: skip
    return _publisher
