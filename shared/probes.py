"""The probes for each dependency the bridge talks to, and the health service that runs them."""

from __future__ import annotations

from shared.clients import Clients, get_clients
from shared.health import HealthReport, Probe, check_health
from shared.settings import get_settings


def table_storage_probe(clients: Clients) -> Probe:
    async def check() -> None:
        async for _ in clients.tables.list_tables(results_per_page=1):
            break

    return Probe("table_storage", check)


def service_bus_probe(clients: Clients, queue: str) -> Probe:
    """Opens (and closes) a sender on the changes queue: proves reachability, auth and the queue's existence.

    A fresh link each time, because a cached one would keep answering from its own state after the bus went away.
    """

    async def check() -> None:
        async with clients.servicebus.get_queue_sender(queue) as sender:
            await sender.create_message_batch()

    return Probe("service_bus", check)


async def bridge_health() -> HealthReport:
    clients = get_clients()
    probes = [table_storage_probe(clients), service_bus_probe(clients, get_settings().changes_queue)]
    return await check_health(probes, limit_seconds=get_settings().health_timeout_seconds)
