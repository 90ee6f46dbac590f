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


async def bridge_health() -> HealthReport:
    clients = get_clients()
    probes = [table_storage_probe(clients)]
    return await check_health(probes, limit_seconds=get_settings().health_timeout_seconds)
