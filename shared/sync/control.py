"""Map state for operators: pause holds a map's changes (no time or size limit beyond the ledger's table); resume
puts them back on the queue in the order they arrived.

A map that fails its check against the apps' metadata (`shared.maps.check`) is `invalid`: its changes are held
exactly as a paused map's, with the reasons in its state, and released when a later check passes (on resume, or
`GET /api/maps/check`). The check also runs once per process before the first change is applied (`MapGate`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shared.bus.publisher import ServiceBusChangePublisher
from shared.connectors.wiring import Connectors
from shared.ledger.tables import Ledger
from shared.maps.loader import MapSet
from shared.maps.metadata import CheckReport, MetadataUnavailable

INVALID = "invalid"
log = logging.getLogger("sync.control")
Checker = Callable[[], Awaitable[CheckReport]]


async def live_check(maps: MapSet, connectors: Connectors) -> CheckReport:
    """The check against both apps, with the bridge's own connectors (settings and credentials)."""
    from shared.maps.metadata import check_live
    from shared.settings import ConfigurationError

    try:
        return await check_live(maps, connectors.dataverse, connectors.fno)
    except ConfigurationError as exc:
        raise MetadataUnavailable(str(exc)) from exc


@dataclass
class MapControl:
    maps: MapSet
    ledger: Ledger
    publisher: ServiceBusChangePublisher
    checker: Checker | None = None

    async def states(self) -> list[dict[str, Any]]:
        out = []
        for name in self.maps.order:
            state = await self.ledger.map_state(name)
            out.append({"map": name, "enabled": self.maps.maps[name].map.enabled} | state)
        return out

    async def pause(self, name: str, reason: str) -> dict[str, Any]:
        await self.ledger.set_map_state(name, "paused", reason)
        return {"map": name} | await self.ledger.map_state(name)

    async def resume(self, name: str) -> dict[str, Any]:
        if (await self.ledger.map_state(name))["state"] == INVALID and self.checker is not None:
            report = await self.checker()  # an invalid map runs again only once its check passes
            released = await self.apply_check(report)
            return {"map": name, "released": released.get(name, 0)} | await self.ledger.map_state(name)
        await self.ledger.set_map_state(name, "running")
        return {"map": name, "released": await self._release(name)} | await self.ledger.map_state(name)

    async def check(self) -> dict[str, Any]:
        """`GET /api/maps/check`: run the check now, mark failing maps invalid and release those that pass."""
        if self.checker is None:
            raise MetadataUnavailable("no checker configured")
        report = await self.checker()
        released = await self.apply_check(report)
        return report.as_json() | {"released": released, "states": await self.states()}

    async def apply_check(self, report: CheckReport) -> dict[str, int]:
        """Failing maps become invalid (their changes held, the reasons in their state); invalid maps that pass run
        again and their held changes are released. A map an operator paused stays paused either way."""
        released: dict[str, int] = {}
        failing = report.failing()
        for name in self.maps.order:
            state = (await self.ledger.map_state(name))["state"]
            problems = failing.get(name)
            if problems:
                if state != "paused":
                    rows = [{"field": p.field, "reason": p.reason} for p in problems]
                    reason = f"the map does not match the apps' metadata: {len(problems)} problem(s)"
                    await self.ledger.set_map_state(name, INVALID, reason, rows)
                    log.warning(json.dumps({"event": "map-invalid", "map": name, "problems": rows}))
            elif state == INVALID:
                await self.ledger.set_map_state(name, "running")
                released[name] = await self._release(name)
        return released

    async def _release(self, name: str) -> int:
        released = 0
        # Again until none is left: a change another instance held just before it saw the resume is released too.
        while held := await self.ledger.held(name):
            for row_key, event in held:
                # Re-queued as a new message (duplicate detection would drop the original id), in arrival order.
                await self.publisher.publish([event.model_copy(update={"event_id": f"{event.event_id}:resumed"})])
                await self.ledger.release(name, [row_key])
            released += len(held)
        return released


class MapGate:
    """Runs the check once per process, before the first change is applied: Functions has no start-up hook, so it
    is lazy and cached. When the metadata cannot be read the maps keep running (apply fails on its own if the apps
    are down) and the check is tried again after `retry_seconds`."""

    def __init__(self, control: Callable[[], MapControl], retry_seconds: float = 60.0) -> None:
        self._control = control
        self._retry_seconds = retry_seconds
        self._done = False
        self._next_try = 0.0
        self._lock = asyncio.Lock()

    async def ensure(self) -> None:
        if self._done or time.monotonic() < self._next_try:
            return
        async with self._lock:
            if self._done or time.monotonic() < self._next_try:
                return
            control = self._control()
            try:
                if control.checker is None:
                    raise MetadataUnavailable("no checker configured")
                report = await control.checker()
                await control.apply_check(report)
            except MetadataUnavailable as exc:
                log.warning(json.dumps({"event": "map-check-skipped", "reason": str(exc)}))
                self._next_try = time.monotonic() + self._retry_seconds
                return
            self._done = True
            log.info(json.dumps({"event": "map-check", "ok": report.ok, "problems": len(report.problems)}))
