"""Webhook ingest through the dev host into the local broker: throughput, and latency at a steady rate.

Targets on the 2-core reference machine: >= 500 requests/s; p99 <= 100 ms at 200 requests/s.
Run: `make bench` or `.venv/bin/python bench/ingest.py [--requests N] [--rate R] [--seconds S] [--storage]`;
`--storage` adds Azurite, so each send also records the console's waiting list (`shared/ops/waiting.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # a light load generator: httpx's own CPU per request would be the bottleneck

from local.processes import AzuritePorts, emulator_connection, free_port, python_module, start, start_azurite
from local.servicebus.config import DEFAULT_CONFIG
from tests.unit.events.builders import body, context, entity

KEY = "bench-key"


def notification(i: int) -> bytes:
    row = str(uuid.UUID(int=i + 1))
    target = entity("account", row, {"name": f"Customer {i}", "accountnumber": f"C-{i:06d}"}, row_version=str(i))
    return body(context("Update", "account", row, target))


async def throughput(url: str, n: int, concurrency: int) -> float:
    bodies = [notification(i) for i in range(n)]
    next_body = iter(bodies)
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for b in next_body:
            async with session.post(url, data=b, params={"code": KEY}) as r:
                await r.read()
                failures += r.status != 202

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if failures:
        print(f"  {failures} requests failed")
    return n / elapsed


async def steady(url: str, rate: float, seconds: float, offset: int) -> list[float]:
    latencies: list[float] = []
    n = int(rate * seconds)
    bodies = [notification(offset + i) for i in range(n)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=128)) as session:

        async def one(b: bytes) -> None:
            t = time.perf_counter()
            async with session.post(url, data=b, params={"code": KEY}) as r:
                await r.read()
                if r.status == 202:
                    latencies.append((time.perf_counter() - t) * 1000)

        started = time.perf_counter()
        tasks = []
        for i, b in enumerate(bodies):  # open loop: requests go out on schedule whatever the answers do
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(b)))
        await asyncio.gather(*tasks)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--storage", action="store_true", help="with Table Storage: the waiting list is recorded")
    args = parser.parse_args()
    azurite = None
    if args.storage:
        ports = AzuritePorts.free()
        azurite = start_azurite(ports, output=open("/dev/null", "wb"))
    broker_port, host_port = free_port(), free_port()
    broker = start(
        "servicebus",
        python_module(
            "local.servicebus", "--config", str(DEFAULT_CONFIG), "--port", str(broker_port), "--log-level", "WARNING"
        ),
        (broker_port,),
    )
    env = {
        "ServiceBusConnection": emulator_connection(broker_port),
        "FUNCTION_KEYS": json.dumps({"dataverse_webhook": KEY}),
        # Ingest alone: apply would drain the queue on the same two cores (with no Table Storage or apps to write to,
        # failing and retrying each change), and that is apply's benchmark, not this one.
        "AzureWebJobs.apply_change.Disabled": "true",
    }
    if azurite is not None:
        env["AzureWebJobsStorage"] = ports.connection_string()
    try:
        broker.wait_ready(30)
        host = start(
            "dev host",
            python_module("local.host", "--port", str(host_port)),
            (host_port,),
            env=env,
            output=open("/dev/null", "wb"),
        )
        try:
            host.wait_ready(30)
            url = f"http://127.0.0.1:{host_port}/api/webhooks/dataverse"
            asyncio.run(throughput(url, 200, 8))  # warm up: connections, the sender link
            rps = asyncio.run(throughput(url, args.requests, args.concurrency))
            latencies = asyncio.run(steady(url, args.rate, args.seconds, args.requests + 1000))
        finally:
            host.stop()
    finally:
        broker.stop()
        if azurite is not None:
            azurite.stop()
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = cuts[49], cuts[98]
    rps_verdict = "OK" if rps >= 500 else "BELOW"
    p99_verdict = "OK" if p99 <= 100 else "ABOVE"
    print(f"throughput ({args.concurrency} concurrent):  {rps:8,.0f} requests/s   target 500  {rps_verdict}")
    print(
        f"at {args.rate:.0f} requests/s for {args.seconds:.0f} s:   p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        f"   target p99 100 ms  {p99_verdict}  [{len(latencies)} answered 202]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
