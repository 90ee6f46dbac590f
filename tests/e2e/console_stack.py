"""The local stack for the console's tests: the customers map on the `manual` conflict policy (so conflicts park
for a person), alert rules on customers, and a local receiver for their notifications."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from local.processes import AzuritePorts, free_port
from tests.e2e.sync_stack import KEYS, SyncStack, sync_stack

ROOT = Path(__file__).resolve().parents[2]
RULES = {
    "customers": [
        {"errors": 1, "minutes": 5, "actions": ["notify"], "cooldown_minutes": 0},
        {"conflict_parked": True, "actions": ["notify"], "cooldown_minutes": 0},
    ]
}


@dataclass
class Receiver:
    """An alert receiver (a Teams or Logic App endpoint stand-in): it refuses the first POST, to prove the retry."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    refuse_first: int = 1


@contextmanager
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    port = free_port()
    r.url = f"http://127.0.0.1:{port}/hook"
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def hook(request: web.Request) -> web.Response:
        if r.refused < r.refuse_first:
            r.refused += 1
            return web.Response(status=503)
        r.received.append(json.loads(await request.read()))
        return web.Response(status=200)

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield r
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def console_stack(azurite: AzuritePorts, maps_dir: Path) -> Iterator[tuple[SyncStack, Receiver]]:
    for source in (ROOT / "maps" / "tables").glob("*.yaml"):
        shutil.copy(source, maps_dir / source.name)
    customers = maps_dir / "customers.yaml"
    text, count = re.subn(r"(?m)^conflict: .*$", "conflict: {policy: manual, master: fno}", customers.read_text())
    assert count == 1
    customers.write_text(text)
    with receiver() as hook:
        env = {
            "MAPS_DIR": str(maps_dir),
            "ALERT_RULES": json.dumps(RULES),
            "ALERT_WEBHOOK_URL": hook.url,
            "CONSOLE_URL": "http://console.example/api/console",
        }
        with sync_stack(azurite, **env) as s:
            yield s, hook


async def api(s: SyncStack, method: str, path: str, body: Any = None, key: str | None = KEYS["master"],
              headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    sent = {"x-functions-key": key} if key else {}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, f"{s.host}/api/{path}", json=body, headers=sent | (headers or {}))


async def set_column_length(s: SyncStack, column: str, length: int) -> None:
    """A customizer widens (or narrows) a Dataverse column, as the fix of a change that failed on it."""
    async with httpx.AsyncClient() as http:
        body = {"entity_set": "accounts", "alter": [{"name": column, "max_length": length}]}
        (await http.post(f"{s.dataverse_url}/_admin/schema", json=body)).raise_for_status()
