"""The console's parts in one process, built on first use from the process's shared clients."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

from shared.clients import get_clients
from shared.events.model import ChangeEvent
from shared.ops.alerts import Alert, message
from shared.ops.ids import original_event_id
from shared.ops.notify import enqueue
from shared.ops.observer import Effects
from shared.ops.settings import get_ops_settings
from shared.ops.store import OpsStore
from shared.ops.waiting import WaitingChanges

log = logging.getLogger("ops")


@cache
def get_store() -> OpsStore:
    return OpsStore(get_clients().tables)


async def _pause(map_name: str, reason: str) -> None:
    from shared.sync.control import MapControl

    await MapControl.default().pause(map_name, reason)


async def _notify(alert: Alert) -> None:
    settings = get_ops_settings()
    if not settings.alert_webhook_url:
        log.warning(json.dumps({"event": "alert-not-sent", "map": alert.map, "reason": "ALERT_WEBHOOK_URL is not set"}))
        return
    await enqueue(get_clients().servicebus, settings.notifications_queue, message(alert, settings.console_url))


def maps_for(event: ChangeEvent) -> list[str]:
    from shared.maps.model import Side
    from shared.wiring import get_maps

    return [c.map.name for c in get_maps().reading(Side(str(event.source)), event.entity)]


@cache
def get_waiting() -> WaitingChanges:
    return WaitingChanges(get_store(), maps_for)


def queue_watcher() -> WaitingChanges | None:
    """What the publisher tells of the changes it queues; none without Table Storage (ingest alone, a benchmark)."""
    from shared.settings import get_settings

    settings = get_settings()
    if settings.storage_connection_string is None and settings.table_endpoint is None:
        return None
    return get_waiting()


async def resolved_change(event: dict[str, Any]) -> bool:
    """Whether a (dead-lettered) change's error entry was resolved: applied since, by a replay or a resubmission."""
    try:
        change = ChangeEvent.model_validate(event)
    except ValueError:
        return False
    for name in maps_for(change):
        entry = await get_store().error_by_event(name, original_event_id(change.event_id))
        if entry is not None and entry.get("Status") == "resolved":
            return True
    return False


async def _settle_dead_letters(event_id: str) -> int:
    from shared.ops.deadletters import DeadLetters
    from shared.settings import get_settings

    return await DeadLetters(get_clients().servicebus, get_settings().changes_queue).settle_event(event_id)


@cache
def effects() -> Effects:
    return Effects(get_store(), get_ops_settings().rules_for, _pause, _notify, get_waiting(), _settle_dead_letters)


async def drain() -> None:
    """At shutdown: the observer's figures and deletions, and the rows of changes queued, written now."""
    from shared.ops.observer import get_observer

    await get_observer().drain()
    if get_waiting.cache_info().currsize:
        await get_waiting().flush()
