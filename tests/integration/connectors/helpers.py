from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from local.processes import free_port
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport, RetryPolicy
from tests.stack import SIM_TOKEN


class RecordingSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(min(seconds, 0.05))


def dataverse(url: str, retry: RetryPolicy | None = None, sleep: RecordingSleep | None = None) -> DataverseClient:
    kw = {"sleep": sleep} if sleep else {}
    return DataverseClient(ODataTransport(f"{url}/api/data/v9.2/", StaticToken(SIM_TOKEN), retry=retry, **kw))


def fno(url: str, retry: RetryPolicy | None = None, sleep: RecordingSleep | None = None) -> FnoClient:
    kw = {"sleep": sleep} if sleep else {}
    return FnoClient(ODataTransport(f"{url}/data/", StaticToken(SIM_TOKEN), retry=retry, **kw))


async def faults(url: str, **settings: object) -> None:
    async with httpx.AsyncClient() as http:
        if settings:
            (await http.post(f"{url}/_admin/faults", json=settings)).raise_for_status()
        else:
            (await http.delete(f"{url}/_admin/faults")).raise_for_status()


async def writes(url: str, entity_set: str) -> int:
    async with httpx.AsyncClient() as http:
        return int((await http.get(f"{url}/_admin/stats")).json()["writes"].get(entity_set, 0))


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200

    async def wait_for(self, count: int, seconds: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.received) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(self.received)} notifications, expected {count}")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    """A webhook endpoint in the test process that keeps every request it gets."""
    port = free_port()
    box = Receiver(f"http://127.0.0.1:{port}/hook")

    async def hook(request: web.Request) -> web.Response:
        box.received.append(({k.lower(): v for k, v in request.headers.items()} | {"query": request.query_string},
                             await request.read()))  # fmt: skip
        return web.Response(status=box.status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield box
    finally:
        await runner.cleanup()
