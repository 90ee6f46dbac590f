"""Asynchronous webhook delivery in commit order per row: rows are spread over a few ordered lanes, each lane
posts one notification at a time. Dataverse's rule: one more attempt only on 502, 503 or 504.

Tests can make delivery as bad as the real services allow: every notification posted twice (at-least-once), a
shuffled stream (notifications gathered for a moment, then posted in random order across rows and within one), and
a share of notifications lost (Dataverse retries a webhook once, F&O three times; after that it is gone).
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from dataclasses import dataclass

import aiohttp

log = logging.getLogger("sims.delivery")


@dataclass
class Chaos:
    duplicate: bool = False  # post every notification twice
    shuffle: bool = False  # gather notifications for `window_seconds`, post them in random order
    window_seconds: float = 0.5
    drop_share: float = 0.0  # this share of notifications is never posted (a lost webhook), counted in `dropped`


@dataclass
class Notification:
    row: str  # ordering key
    url: str
    headers: dict[str, str]
    body: bytes


class Deliverer:
    def __init__(self, lanes: int = 8, timeout_seconds: float = 60.0) -> None:
        self._queues: list[asyncio.Queue[Notification]] = [asyncio.Queue() for _ in range(lanes)]
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.sent = 0
        self.failed = 0
        self.pending = 0
        self.dropped = 0
        self.last_status: int | None = None
        self.chaos = Chaos()
        self._gathered: list[Notification] = []
        self._shuffler: asyncio.Task[None] | None = None
        self._random = random.Random(11)

    def submit(self, notification: Notification) -> None:
        if not self._workers:
            self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]
        if self.chaos.drop_share and self._random.random() < self.chaos.drop_share:
            self.dropped += 1  # lost: neither sent nor retried, as a webhook Dataverse gave up on
            return
        copies = 2 if self.chaos.duplicate else 1
        self.pending += copies
        if self.chaos.shuffle:
            self._gathered += [notification] * copies
            if self._shuffler is None or self._shuffler.done():
                self._shuffler = asyncio.create_task(self._shuffle())
            return
        lane = zlib.crc32(notification.row.encode()) % len(self._queues)
        for _ in range(copies):
            self._queues[lane].put_nowait(notification)

    async def _shuffle(self) -> None:
        await asyncio.sleep(self.chaos.window_seconds)
        gathered, self._gathered = self._gathered, []
        self._random.shuffle(gathered)
        for n in gathered:  # one lane: the shuffled order is the order of arrival
            self._queues[0].put_nowait(n)

    async def _post(self, n: Notification) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(n.url, data=n.body, headers=n.headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("webhook to %s failed: %s", n.url.split("?")[0], exc)
            return 0

    async def _work(self, queue: asyncio.Queue[Notification]) -> None:
        while True:
            n = await queue.get()
            try:
                status = await self._post(n)
                if status in (502, 503, 504):
                    status = await self._post(n)
                self.last_status = status
                if 200 <= status < 300:
                    self.sent += 1
                else:
                    self.failed += 1
                    log.warning("webhook to %s answered %s", n.url.split("?")[0], status)
            finally:
                self.pending -= 1

    async def close(self) -> None:
        if self._shuffler is not None:
            self._shuffler.cancel()
        for w in self._workers:
            w.cancel()
        if self._session is not None:
            await self._session.close()
