"""Apply throughput and latency through the whole local stack (Azurite, broker, both simulators, dev host).

Changes come from both simulators: every other customer is created in F&O, the rest as accounts in Dataverse.

1. Throughput: 600 customers created as fast as the simulators take them; applied changes per second until every
   one is in the other app (target ≥ 150/s).
2. Latency: a steady 50 changes/s for 10 s; p95 change-to-target latency, from the person's write to the apply that
   wrote the other app, read from apply's log lines (target ≤ 1 s).
3. Lone changes: one at a time, each waited for.

For each it prints the app requests per synced change, counted by the simulators themselves (`GET /_admin/stats` →
`requests`, less the benchmark's own writes): target ≤ 0.2 in the burst, ≤ 1.0 for a lone change; and the CPU per
change of each process (the Functions host's target in the burst: ≤ 5 ms).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import TOKEN, Stack, app_requests, cpu_report, cpu_seconds, start_stack
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient, write_body
from shared.connectors.http import ODataTransport
from shared.connectors.wire import dumps

LOG = Path(f"/tmp/bench-apply-devhost-{os.getpid()}.log")  # per run: other runs may share the machine
# What `shared.connectors.http.ODataTransport` sends with every request.
PERSON_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
    "Authorization": f"Bearer {TOKEN}",
    "Content-Type": "application/json; charset=utf-8",
}
_LATENCY = re.compile(r'"latency_ms": ([0-9.]+)')


@dataclass
class AppliedLog:
    """The latencies of apply's log lines that wrote a target, read on from where the last call stopped (reading
    the whole log five times a second cost the benchmark more CPU than its own writes)."""

    offset: int = 0
    partial: bytes = b""
    latencies: list[float] = field(default_factory=list)

    def read(self) -> list[float]:
        with LOG.open("rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace")
            if '"outcome": "applied"' in line and '"writes": 0' not in line:
                match = _LATENCY.search(line)
                if match:
                    self.latencies.append(float(match.group(1)))
        return self.latencies


_APPLIED = AppliedLog()


def applied(after: float) -> list[float]:
    return _APPLIED.read()[int(after) :]


async def quiet(urls: dict[str, str], seconds: float = 2.0) -> int:
    """Waits until the apps have had no request for `seconds` (the bridge idle: echoes and retries done)."""
    last, since = await app_requests(urls), time.monotonic()
    while time.monotonic() - since < seconds:
        await asyncio.sleep(0.25)
        now = await app_requests(urls)
        if now != last:
            last, since = now, time.monotonic()
    return last


def requests_report(before: int, after: int, own: int, changes: int, target: float) -> str:
    bridge = after - before - own
    return f"app requests per synced change: {bridge / max(changes, 1):.2f} ({bridge} for {changes}; target ≤ {target})"


async def webhooks_sent(urls: dict[str, str]) -> dict[str, int]:
    """Notifications each simulator has delivered so far (its deliverer's counter), echoes of our writes included."""
    async with aiohttp.ClientSession() as http:
        sent = {}
        for app, url in urls.items():
            async with http.get(f"{url}/_admin/stats") as response:
                sent[app] = int((await response.json())["webhooks"]["sent"])
        return sent


def webhooks_report(before: dict[str, int], after: dict[str, int], changes: int) -> str:
    """Each webhook is a POST the dev host ingests: a person's change raises one, and its write into the other app
    raises the echo (acknowledged unqueued from Dataverse by its tag; queued and skipped by apply from F&O)."""
    sent = {app: after[app] - before.get(app, 0) for app in after}
    parts = ", ".join(f"{app} {n}" for app, n in sent.items())
    return f"webhooks per synced change: {sum(sent.values()) / max(changes, 1):.2f} ({parts})"


@dataclass
class People:
    """A person in each app; even-numbered customers are made in F&O, odd ones in Dataverse. Each creation is the
    request our connectors would send (`FnoClient.create`, `DataverseClient.create`: the same URL, headers and
    body), sent with aiohttp: httpx's own CPU per request (its connection pool is scanned for every request) made
    the benchmark's writes ≈ 3 ms of CPU a change, on the cores the stack under test shares."""

    urls: dict[str, str]
    company: str  # USMF's cdm_companyid
    http: aiohttp.ClientSession = field(default_factory=lambda: aiohttp.ClientSession(headers=PERSON_HEADERS))

    async def create(self, prefix: str, i: int) -> None:
        number = f"{prefix}{i:05d}"
        if i % 2 == 0:
            customer = {"OrganizationName": f"Bench {i}", "PartyType": "Organization", "CustomerGroupId": "10"}
            key = {"dataAreaId": "usmf", "CustomerAccount": number}
            await self._post(f"{self.urls['fno']}/data/CustomersV3?cross-company=true", {**customer, **key})
            return
        account: dict[str, object] = {"name": f"Bench {i}", "accountnumber": number, "customertypecode": 3}
        body = write_body(account, {"msdyn_company": ("cdm_companies", self.company)}, None)
        await self._post(f"{self.urls['dataverse']}/api/data/v9.2/accounts", body)

    async def _post(self, url: str, body: dict[str, object]) -> None:
        async with self.http.post(url, data=dumps(body).encode("utf-8")) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST {url} answered {response.status}: {(await response.text())[:300]}")
            await response.read()

    async def close(self) -> None:
        await self.http.close()


async def main() -> None:
    stack = Stack()
    try:
        await start_stack(stack, LOG)
        services, urls = stack.services, stack.urls
        dataverse = DataverseClient(ODataTransport(f"{urls['dataverse']}/api/data/v9.2/", StaticToken(TOKEN)))
        usmf = await dataverse.get("cdm_companies", {"cdm_companycode": "USMF"})
        await dataverse.close()
        people = People(urls, usmf.values["cdm_companyid"])
        await people.create("WARM", 0)
        await people.create("WARM", 1)
        await asyncio.sleep(3)
        # 1. throughput
        count, seen = 600, len(applied(0))
        cpu_before = cpu_seconds(services)
        requests_before = await app_requests(urls)
        webhooks_before = await webhooks_sent(urls)
        started = time.monotonic()
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await people.create("TP", i)

        await asyncio.gather(*(one(i) for i in range(count)))
        while len(applied(seen)) < count and time.monotonic() - started < 120:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        done = len(applied(seen))
        print(
            f"throughput: {done}/{count} changes applied in {elapsed:.1f} s = {done / elapsed:.0f} changes/s"
            " (target ≥ 150)"
        )
        print(cpu_report(cpu_before, cpu_seconds(services), max(done, 1)))
        print(requests_report(requests_before, await app_requests(urls), count, done, 0.2))
        # 2. latency at 50/s
        await asyncio.sleep(2)
        print(webhooks_report(webhooks_before, await webhooks_sent(urls), done))  # the last echoes in, too
        seen = len(applied(0))
        prefix = f"L{uuid.uuid4().hex[:3]}"
        tick = time.monotonic()
        writes = []
        for i in range(500):
            writes.append(asyncio.ensure_future(people.create(prefix, i)))
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        deadline = time.monotonic() + 60
        while len(applied(seen)) < 500 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.gather(*writes)
        latencies = sorted(applied(seen))
        if latencies:
            p95 = latencies[int(len(latencies) * 0.95) - 1]
            print(
                f"latency at 50 changes/s: {len(latencies)} applied; median {statistics.median(latencies):.0f} ms, "
                f"p95 {p95:.0f} ms (target ≤ 1000 ms)"
            )
        # 3. lone changes, one at a time
        lone = 10
        requests_before = await quiet(urls)
        seen, cpu_before = len(applied(0)), cpu_seconds(services)
        prefix = f"S{uuid.uuid4().hex[:3]}"
        for i in range(lone):
            await people.create(prefix, i)
            deadline = time.monotonic() + 30
            while len(applied(seen)) < i + 1 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        requests_after = await quiet(urls)  # the echoes come back and are skipped: their cost counts too
        done = len(applied(seen))
        print(f"lone changes: {done}/{lone} applied")
        print(requests_report(requests_before, requests_after, lone, done, 1.0))
        print(cpu_report(cpu_before, cpu_seconds(services), max(done, 1)))
        await people.close()
    finally:
        stack.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so `finally` stops every child process
    asyncio.run(main())
