"""The F&O simulator's data events as it posts them, caught by a receiver of the test's own."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from local.sims.fno import FnoDialect
from tests.integration.sims.conftest import Sim


async def data_event(fo: Sim, row: dict[str, Any]) -> bytes:
    """The F&O simulator's data event for a customer created in it, as it would post it to the bridge."""
    received: list[bytes] = []
    arrived = asyncio.Event()

    async def endpoint(request: web.Request) -> web.Response:
        received.append(await request.read())
        arrived.set()
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/events", endpoint)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    try:
        dialect = fo.simulator.dialect
        assert isinstance(dialect, FnoDialect)
        dialect.endpoint = {"url": f"http://127.0.0.1:{receiver.port}/events", "headers": {}}
        assert (await fo.http.post("CustomersV3", json=row)).status_code == 201
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await receiver.close()
    return received[0]
