"""The probes for each dependency the bridge talks to, and the health service that runs them."""

from __future__ import annotations

from collections.abc import Callable

from shared.clients import Clients
from shared.health import HealthReport, Probe, check_health
from shared.maps.loader import MapProblems


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


def maps_probe(load: Callable[[], object]) -> Probe:
    """The table maps load: a map set with a problem (a dependency cycle, an unknown map, a bad field) leaves the
    bridge unable to apply or sync anything, so health names it with its problems on one line."""

    async def check() -> None:
        try:
            load()
        except MapProblems as exc:
            raise RuntimeError("; ".join(str(p) for p in exc.problems)) from None

    return Probe("maps", check)


async def bridge_health() -> HealthReport:
    from shared.bridge import bridge

    built = bridge()
    clients, settings = built.clients, built.settings
    probes = [
        table_storage_probe(clients),
        service_bus_probe(clients, settings.changes_queue),
        maps_probe(lambda: built.maps),
    ]
    return await check_health(probes, limit_seconds=settings.health_timeout_seconds)
