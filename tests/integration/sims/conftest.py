"""Each test gets its own simulator, served in-process on a free port (real HTTP, real aiohttp app): schema
customizations and strictness checks never leak into the session's shared simulators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp.test_utils import TestServer

from local.sims.engine import Simulator
from local.sims.server import build, seed


@dataclass
class Sim:
    simulator: Simulator
    url: str  # scheme://host:port
    http: httpx.AsyncClient  # rooted at the app's API root, with the bearer token
    admin: httpx.AsyncClient  # rooted at the host, for /_admin


async def _serve(kind: str) -> AsyncIterator[Sim]:
    simulator = build(kind, token="t")
    seed(simulator, kind)
    server = TestServer(simulator.app(), host="127.0.0.1")
    await server.start_server()
    url = f"http://127.0.0.1:{server.port}"
    headers = {"Authorization": "Bearer t", "Accept": "application/json"}
    async with (
        httpx.AsyncClient(base_url=url + simulator.dialect.root, headers=headers) as http,
        httpx.AsyncClient(base_url=url) as admin,
    ):
        try:
            yield Sim(simulator, url, http, admin)
        finally:
            await simulator.dialect.deliverer.close()
            await server.close()


@pytest.fixture
async def dv() -> AsyncIterator[Sim]:
    async for sim in _serve("dataverse"):
        yield sim


@pytest.fixture
async def fo() -> AsyncIterator[Sim]:
    async for sim in _serve("fno"):
        yield sim
