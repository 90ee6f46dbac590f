"""The console's parts in one process, built on first use from the process's shared clients."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

from shared.events.model import ChangeEvent
from shared.ops.alerts import Alert, message
from shared.ops.ids import original_event_id
from shared.ops.notify import enqueue
from shared.ops.observer import Effects
from shared.ops.settings import get_ops_settings
from shared.ops.store import OpsStore
from shared.ops.waiting import WaitingChanges

if TYPE_CHECKING:
    from shared.bridge import Bridge

log = logging.getLogger("ops")


def _bridge() -> Bridge:
    from shared.bridge import bridge  # the composition root (imported late: it builds apply, which observes here)

    return bridge()


@cache
def get_store() -> OpsStore:
    return OpsStore(_bridge().clients.tables)


async def _pause(map_name: str, reason: str) -> None:
    await _bridge().control.pause(map_name, reason)


async def _notify(alert: Alert) -> None:
    settings = get_ops_settings()
    if not settings.alert_webhook_url:
        log.warning(json.dumps({"event": "alert-not-sent", "map": alert.map, "reason": "ALERT_WEBHOOK_URL is not set"}))
        return
    await enqueue(_bridge().clients.servicebus, settings.notifications_queue, message(alert, settings.console_url))


def maps_for(event: ChangeEvent) -> list[str]:
    return [c.map.name for c in _bridge().maps.reading(event.source, event.entity)]


@cache
def get_waiting() -> WaitingChanges:
    return WaitingChanges(get_store(), maps_for)


def queue_watcher() -> WaitingChanges | None:
    """What the publisher tells of the changes it queues; none without Table Storage (ingest alone, a benchmark)."""
    settings = _bridge().settings
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

    b = _bridge()
    return await DeadLetters(b.clients.servicebus, b.settings.changes_queue).settle_event(event_id)


@cache
def effects() -> Effects:
    return Effects(get_store(), get_ops_settings().rules_for, _pause, _notify, get_waiting(), _settle_dead_letters)


async def drain() -> None:
    """At shutdown: the observer's figures and deletions, and the rows of changes queued, written now."""
    from shared.ops.observer import get_observer

    if get_waiting.cache_info().currsize:  # rows first: the observer's deletions must find them
        await get_waiting().flush()
    await get_observer().drain()
