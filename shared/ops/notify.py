"""Alert notifications: queued on their own Service Bus queue (so sync never waits for a receiver), then POSTed as
JSON to ALERT_WEBHOOK_URL by the `notify` trigger. A failed POST raises, so Service Bus redelivers the message
(MaxDeliveryCount, then its dead-letter queue keeps it)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from azure.servicebus import ServiceBusMessage
from azure.servicebus.aio import ServiceBusClient


class NotificationFailed(RuntimeError):
    """The receiver did not take the notification; the message is redelivered."""


async def enqueue(client: ServiceBusClient, queue: str, body: dict[str, Any]) -> None:
    async with client.get_queue_sender(queue) as sender:
        await sender.send_messages(ServiceBusMessage(json.dumps(body), content_type="application/json"))


async def post(url: str, body: bytes) -> int:
    async with httpx.AsyncClient(timeout=10.0) as http:
        try:
            response = await http.post(url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise NotificationFailed(f"the alert receiver could not be reached: {type(exc).__name__}") from exc
    if response.status_code >= 300:
        raise NotificationFailed(f"the alert receiver answered {response.status_code}")
    return response.status_code
