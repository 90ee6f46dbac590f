"""Health of the bridge's dependencies: each probe is a small adapter; the report is a pure aggregation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Probe:
    """One dependency: `check` returns when it is reachable and raises when it is not."""

    name: str
    check: Check


class DependencyHealth(BaseModel):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class HealthReport(BaseModel):
    status: Literal["healthy", "unhealthy"]
    dependencies: dict[str, DependencyHealth]

    @property
    def http_status(self) -> int:
        return 200 if self.status == "healthy" else 503


async def _run(probe: Probe, limit_seconds: float) -> DependencyHealth:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe.check(), limit_seconds)
    except TimeoutError:
        error: str | None = f"no answer within {limit_seconds:g} s"
    except Exception as exc:  # a probe's failure is data, not a crash
        error = f"{type(exc).__name__}: {_first_line(str(exc))}"
    else:
        error = None
    latency = round((time.perf_counter() - started) * 1000, 1)
    return DependencyHealth(status="down" if error else "up", latency_ms=latency, error=error)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:300] if text.strip() else ""


async def check_health(probes: Sequence[Probe], limit_seconds: float) -> HealthReport:
    results = await asyncio.gather(*(_run(p, limit_seconds) for p in probes))
    deps = {p.name: r for p, r in zip(probes, results, strict=True)}
    healthy = all(r.status == "up" for r in results)
    return HealthReport(status="healthy" if healthy else "unhealthy", dependencies=deps)
