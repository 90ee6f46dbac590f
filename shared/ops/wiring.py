"""The console's parts in one process: built on first use by the composition root (`Bridge.ops`), from the
process's shared clients, and dropped with it — a bridge closed and built again gets parts over its new clients."""

from __future__ import annotations

import json
import logging
from functools import cached_property
from typing import TYPE_CHECKING, Any

from shared.events.model import ChangeEvent
from shared.ops.alerts import Alert, message
from shared.ops.ids import original_event_id
from shared.ops.notify import enqueue
from shared.ops.observer import Effects, Observer
from shared.ops.settings import get_ops_settings
from shared.ops.store import OpsStore
from shared.ops.waiting import WaitingChanges

if TYPE_CHECKING:
    from shared.bridge import Bridge

log = logging.getLogger("ops")


def _bridge() -> Bridge:
    from shared.bridge import bridge  # the composition root (imported late: it builds apply, which observes here)

    return bridge()


def get_store() -> OpsStore:
    return _bridge().ops.store


def maps_for(event: ChangeEvent) -> list[str]:
    return _maps_for(_bridge(), event)


def _maps_for(bridge: Bridge, event: ChangeEvent) -> list[str]:
    return [c.map.name for c in bridge.maps.reading(event.source, event.entity)]


def get_waiting() -> WaitingChanges:
    return _bridge().ops.waiting


def queue_watcher(bridge: Bridge) -> WaitingChanges | None:
    """What the publisher tells of the changes it queues; none without Table Storage (ingest alone, a benchmark)."""
    settings = bridge.settings
    if settings.storage_connection_string is None and settings.table_endpoint is None:
        return None
    return bridge.ops.waiting


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


def effects() -> Effects:
    return _bridge().ops.effects


class OpsParts:
    """The console's store, its waiting list and the observer acting through them, for one bridge; each built on
    first use (the observer counts in memory from the start, and reaches Table Storage only when it flushes)."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self.observer = Observer(lambda: self.effects)

    @cached_property
    def store(self) -> OpsStore:
        return OpsStore(self._bridge.clients.tables)

    @cached_property
    def waiting(self) -> WaitingChanges:
        return WaitingChanges(self.store, lambda event: _maps_for(self._bridge, event))

    @cached_property
    def effects(self) -> Effects:
        return Effects(self.store, get_ops_settings().rules_for, self._pause, self._notify, self.waiting,
                       self._settle_dead_letters)  # fmt: skip

    async def _pause(self, map_name: str, reason: str) -> None:
        await self._bridge.control.pause(map_name, reason)

    async def _notify(self, alert: Alert) -> None:
        settings = get_ops_settings()
        if not settings.alert_webhook_url:
            log.warning(
                json.dumps({"event": "alert-not-sent", "map": alert.map, "reason": "ALERT_WEBHOOK_URL is not set"})
            )
            return
        await enqueue(
            self._bridge.clients.servicebus, settings.notifications_queue, message(alert, settings.console_url)
        )

    async def _settle_dead_letters(self, event_id: str) -> int:
        from shared.ops.deadletters import DeadLetters

        b = self._bridge
        return await DeadLetters(b.clients.servicebus, b.settings.changes_queue).settle_event(event_id)

    async def drain(self) -> None:
        """The rows of changes queued first (the observer's deletions must find them), then the figures."""
        if "waiting" in self.__dict__:
            await self.waiting.flush()
        await self.observer.drain()


async def drain() -> None:
    """At shutdown: the observer's figures and deletions, and the rows of changes queued, written now (only if the
    console's parts were ever built: a process that never observed has nothing to write)."""
    from shared.bridge import current_bridge

    b = current_bridge()
    if b is not None and "ops" in b.__dict__:
        await b.ops.drain()
