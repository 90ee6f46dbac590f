"""The console's parts in one process, built on first use from the process's shared clients."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import TYPE_CHECKING

from shared.ops.alerts import Alert, message
from shared.ops.notify import enqueue
from shared.ops.observer import Effects
from shared.ops.settings import get_ops_settings
from shared.ops.store import OpsStore

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


@cache
def effects() -> Effects:
    return Effects(get_store(), get_ops_settings().rules_for, _pause, _notify)
