"""Map state for operators: pause holds a map's changes (no time or size limit beyond the ledger's table); resume
puts them back on the queue in the order they arrived."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.bus.publisher import ServiceBusChangePublisher
from shared.ledger.tables import Ledger
from shared.maps.loader import MapSet


@dataclass
class MapControl:
    maps: MapSet
    ledger: Ledger
    publisher: ServiceBusChangePublisher

    @classmethod
    def default(cls) -> MapControl:
        from shared.sync.wiring import get_ledger
        from shared.wiring import get_maps, get_publisher

        return cls(get_maps(), get_ledger(), get_publisher())

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
        await self.ledger.set_map_state(name, "running")
        released = 0
        # Again until none is left: a change another instance held just before it saw the resume is released too.
        while held := await self.ledger.held(name):
            for row_key, event in held:
                # Re-queued as a new message (duplicate detection would drop the original id), in arrival order.
                await self.publisher.publish([event.model_copy(update={"event_id": f"{event.event_id}:resumed"})])
                await self.ledger.release(name, [row_key])
            released += len(held)
        return {"map": name, "released": released} | await self.ledger.map_state(name)
