"""Alert notifications: the trigger on `notifications` POSTs each to ALERT_WEBHOOK_URL. A failure raises, so Service
Bus delivers it again (up to the queue's MaxDeliveryCount, then its dead-letter queue keeps it); sync never waits."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.ops.notify import post
from shared.ops.settings import get_ops_settings

bp = func.Blueprint()  # type: ignore[no-untyped-call]
log = logging.getLogger(__name__)


@bp.service_bus_queue_trigger(arg_name="message", queue_name="notifications", connection="ServiceBusConnection")
async def notify(message: func.ServiceBusMessage) -> None:
    url = get_ops_settings().alert_webhook_url
    if not url:
        log.warning("an alert notification is dropped: ALERT_WEBHOOK_URL is not set")
        return
    status = await post(url, message.get_body())
    log.info("alert notification %s delivered (%d)", message.message_id, status)
