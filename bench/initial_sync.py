"""Initial sync at bulk speed, through the whole local stack (Azurite, broker, both simulators, dev host):
N generated F&O customers (`--generate customers=N`, default 100,000) into an empty Dataverse simulator by
`POST /api/maps/customers/sync`, then figures:

- rows/s end to end (202 to `done`; target ≥ 2,000), and the run's own rows/s as it reports it;
- app requests per 1,000 rows, from the simulators' request counters (target ≤ 12);
- the Dataverse simulator's own bulk-write rate in the same run (`$batch` of 1,000 upserts, as many in flight as the
  run uses), the ceiling, and the run's share of it;
- a plan-only run's rate over the same data (after the run: everything compares, nothing is written).

`python bench/initial_sync.py [N] [--runs K]` — figures per run and their median.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import KEYS, TOKEN, Stack, app_requests, cpu_report, cpu_seconds, start_stack
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient, WriteMode
from shared.connectors.http import ODataTransport

LOG = Path("/tmp/bench-initial-sync-devhost.log")


async def sync(host: str, mode: str) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=60) as http:
        headers = {"x-functions-key": KEYS["master"]}
        answer = await http.post(f"{host}/api/maps/customers/sync", json={"mode": mode}, headers=headers)
        answer.raise_for_status()
        while True:
            report: dict[str, Any] = (await http.get(host + answer.headers["Location"], headers=headers)).json()
            if report["state"] in ("done", "failed"):
                return time.monotonic() - started, report
            await asyncio.sleep(0.25)


async def dataverse_ceiling(url: str, rows: int = 10_000, in_flight: int = 2) -> float:
    """The simulator's own rate for the writes a run sends: `$batch`es of 1,000 creates, `in_flight` at a time."""
    client = DataverseClient(ODataTransport(f"{url}/api/data/v9.2/", StaticToken(TOKEN)))
    company = (await client.get("cdm_companies", {"cdm_companycode": "USMF"})).values["cdm_companyid"]
    ops = [
        client.write_operation(
            "accounts",
            {"_msdyn_company_value": company, "accountnumber": f"CEIL{i:07d}"},
            {"name": f"Ceiling {i}", "customertypecode": 3},
            mode=WriteMode.CREATE,
        )
        for i in range(rows)
    ]
    gate = asyncio.Semaphore(in_flight)

    async def send(chunk: list[Any]) -> None:
        async with gate:
            await client.batch(chunk, atomic=False, continue_on_error=True)

    started = time.monotonic()
    await asyncio.gather(*(send(ops[i : i + 1000]) for i in range(0, rows, 1000)))
    elapsed = time.monotonic() - started
    await client.close()
    return rows / elapsed


async def one(count: int) -> dict[str, float]:
    stack = Stack()
    try:
        generate = ("--generate", f"customers={count}")
        await start_stack(stack, LOG, fno_args=generate, connect="--no-webhooks" not in sys.argv)
        services, urls, base = stack.services, stack.urls, stack.host
        before = await app_requests(urls)
        cpu_before = cpu_seconds(services)
        seconds, report = await sync(base, "sync")
        cpu_after = cpu_seconds(services)
        cpu = cpu_report(cpu_before, cpu_after, count, unit="row", digits=2)
        used = await app_requests(urls) - before
        progress = report["progress"]["customers"]
        created = progress["dataverse"]["created"]
        assert report["state"] == "done" and created >= count, json.dumps(report)[:2000]
        plan_seconds, plan = await sync(base, "plan")
        plan_cpu = cpu_report(cpu_after, cpu_seconds(services), count, unit="row planned", digits=2)
        ceiling = await dataverse_ceiling(urls["dataverse"])
        figures = {
            "rows": created, "seconds": seconds, "rows_per_s": created / seconds,
            "run_rows_per_s": float(progress["rows_per_second"]), "requests_per_1000": 1000 * used / created,
            "ceiling_rows_per_s": ceiling, "plan_rows_per_s": plan["progress"]["customers"]["planned"] / plan_seconds,
        }  # fmt: skip
        figures["share_of_ceiling"] = figures["rows_per_s"] / ceiling
        print(
            f"{created} customers in {seconds:.1f} s: {figures['rows_per_s']:,.0f} rows/s end to end (target ≥ 2,000;"
            f" the run reports {figures['run_rows_per_s']:,.0f}); {figures['requests_per_1000']:.1f} app requests"
            f" per 1,000 rows (target ≤ 12); Dataverse simulator bulk writes {ceiling:,.0f} rows/s (ceiling),"
            f" run/ceiling {figures['share_of_ceiling']:.2f}; plan-only {figures['plan_rows_per_s']:,.0f} rows/s",
            flush=True,
        )
        print(cpu, flush=True)
        print(plan_cpu, flush=True)
        return figures
    finally:
        stack.stop()


async def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 100_000
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
    results = [await one(count) for _ in range(runs)]
    if runs > 1:
        medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print("medians: " + ", ".join(f"{k} {v:,.2f}" for k, v in medians.items()))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so `finally` stops every child process
    asyncio.run(main())
