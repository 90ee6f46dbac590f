"""A sync run's batches at once follow the server's hint (Dataverse's x-ms-dop-hint), even as it changes."""

from __future__ import annotations

import asyncio

from shared.initialsync.io import Gate


async def test_holders_at_once_never_exceed_the_current_limit() -> None:
    limit = [2]
    gate = Gate(lambda: limit[0])
    seen: list[int] = []

    async def hold() -> None:
        async with gate:
            seen.append(gate.active)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(hold() for _ in range(8)))
    assert max(seen) == 2
    limit[0], seen[:] = 5, []
    await asyncio.gather(*(hold() for _ in range(10)))
    assert max(seen) == 5
    limit[0], seen[:] = 0, []  # a nonsensical hint still lets one through
    await asyncio.gather(*(hold() for _ in range(3)))
    assert max(seen) == 1
