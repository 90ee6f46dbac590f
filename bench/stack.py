"""The whole local stack for a benchmark (Azurite, broker, both simulators, dev host), on free ports, and the
counters the benchmarks print: CPU seconds by process group, and the requests the simulators have answered.

One copy of this for every benchmark: `bench/apply.py` and `bench/initial_sync.py` had each their own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from local.connect import connect_apps
from local.processes import AzuritePorts, Service, emulator_connection, free_port, python_module, start, start_azurite
from local.servicebus.config import DEFAULT_CONFIG

TOKEN = "bench-token"
KEYS = {"master": "m", "default": "d"}


@dataclass
class Stack:
    """The processes started, in start order (stopped in reverse by `stop`), and where to reach them."""

    services: list[Service] = field(default_factory=list)
    urls: dict[str, str] = field(default_factory=dict)  # "dataverse" / "fno" → the simulator's base URL
    host: str = ""  # the dev host's base URL

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


async def start_stack(
    stack: Stack, log: Path, *, fno_args: Sequence[str] = (), connect: bool = True, ready_seconds: float = 120
) -> None:
    """Starts every process into `stack` (so a caller's `finally: stack.stop()` stops what did start, even when a
    later one fails) and, with `connect`, registers the bridge's webhooks in both simulators."""
    ports = AzuritePorts.free()
    stack.services.append(start_azurite(ports))
    broker_port, host_port = free_port(), free_port()
    broker = start(
        "servicebus",
        python_module("local.servicebus", "--config", str(DEFAULT_CONFIG), "--port", str(broker_port)),
        (broker_port,),
    )
    stack.services.append(broker)
    for kind, extra in (("dataverse", ()), ("fno", tuple(fno_args))):
        port = free_port()
        sim = start(
            kind,
            python_module(f"local.sims.{kind}", "--port", str(port), "--seed", *extra),
            (port,),
            env={"LOCAL_BEARER_TOKEN": TOKEN},
        )
        stack.services.append(sim)
        sim.wait_ready(ready_seconds)
        stack.urls[kind] = f"http://127.0.0.1:{port}"
    broker.wait_ready()
    env = {
        "AzureWebJobsStorage": ports.connection_string(),
        "ServiceBusConnection": emulator_connection(broker_port),
        "DATAVERSE_URL": stack.urls["dataverse"],
        "FNO_URL": stack.urls["fno"],
        "LOCAL_BEARER_TOKEN": TOKEN,
        "FUNCTION_KEYS": json.dumps(KEYS),
    }
    host = start(
        "dev host",
        python_module("local.host", "--port", str(host_port)),
        (host_port,),
        env=env,
        output=log.open("wb"),
    )
    stack.services.append(host)
    host.wait_ready()
    stack.host = f"http://127.0.0.1:{host_port}"
    if connect:
        await connect_apps(stack.host, stack.urls["dataverse"], stack.urls["fno"], TOKEN, KEYS)


def cpu_seconds(services: list[Service]) -> dict[str, float]:
    """CPU time (user + system) of each service's process group, and of this benchmark's own process."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys([s.name for s in services], 0.0)
    groups = {s.pid: s.name for s in services}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # fields: state, ppid, pgrp, …, utime (11), stime (12)
            used[groups[int(fields[2])]] += (int(fields[11]) + int(fields[12])) / ticks
    own = os.times()
    return used | {"benchmark": own.user + own.system}


def cpu_report(
    before: dict[str, float], after: dict[str, float], changes: int, unit: str = "change", digits: int = 1
) -> str:
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    parts = ", ".join(
        f"{name} {1000 * cpu / changes:.{digits}f}" for name, cpu in sorted(spent.items(), key=lambda kv: -kv[1])
    )
    return f"CPU ms per {unit}: {1000 * sum(spent.values()) / changes:.{digits}f} in all ({parts})"


async def app_requests(urls: dict[str, str]) -> int:
    """Requests both simulators have answered so far (the bridge's and the benchmark's own)."""
    async with httpx.AsyncClient() as http:
        total = 0
        for url in urls.values():
            total += int((await http.get(f"{url}/_admin/stats")).json()["requests"])
        return total
