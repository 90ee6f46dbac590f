"""The virtual tables' enum options, read from Dataverse once per table per process and kept, so that ingest can
decode F&O data events' option-set values into symbols (`shared.events.enums`) and apply need not re-read the row.

Never in the way: a read that fails, is refused or is slow leaves the change as it was (apply re-reads it), and
is not tried again for a while. The reads are amortised: one per virtual table, again after `ttl`, and again when a
value is not known (an extensible enum got a new value) — at most once per `retry_after` per table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from shared.connectors.errors import NotFound
from shared.events.enums import EnumSymbols, TableOptions, table_options

log = logging.getLogger(__name__)
ReadDefinitions = Callable[[str], Awaitable[Any]]  # virtual table → its picklist definitions (`picklist_query`)


class VirtualTableEnums:
    def __init__(
        self,
        read: ReadDefinitions,
        *,
        ttl: float = 900.0,
        retry_after: float = 60.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._ttl, self._retry_after, self._timeout, self._clock = ttl, retry_after, timeout, clock
        self._known: dict[str, tuple[float, TableOptions]] = {}  # table → (read at, its options)
        self._tried: dict[str, float] = {}  # table → when it was last asked for, answered or not
        self._locks: dict[str, asyncio.Lock] = {}
        self._generation = 0  # grows with every answer kept: a snapshot older than it may decode less
        self.requests = 0  # metadata requests sent (they must stay a few per process, not one per change)

    def snapshot(self) -> EnumSymbols:
        """What is known now (tables read within `ttl`), to decode with."""
        now = self._clock()
        fresh = {table: options for table, (at, options) in self._known.items() if now - at < self._ttl}
        return EnumSymbols(fresh, generation=self._generation)

    async def refresh(self, tables: Iterable[str], since: int) -> bool:
        """Read `tables`' definitions where due (never read, read over `ttl` ago, or missing a value and not asked
        for within `retry_after`). True when something was learnt after the snapshot of generation `since`."""
        await asyncio.gather(*(self._refresh(table) for table in sorted(set(tables))))
        return self._generation != since

    async def _refresh(self, table: str) -> None:
        async with self._locks.setdefault(table, asyncio.Lock()):  # one read per table, however many wait for it
            now = self._clock()
            tried = self._tried.get(table)
            if tried is not None and now - tried < self._retry_after:
                return  # asked for just now (possibly by a change waiting with this one), answered or not: a table
                # whose options went stale and cannot be read is not asked for again by every notification
            self._tried[table] = now
            self.requests += 1
            try:
                document = await asyncio.wait_for(self._read(table), self._timeout)
            except NotFound:
                document = None  # no such table in Dataverse: nothing decodes, and that is known for a while
            except Exception as exc:  # never fail a notification for want of metadata
                log.warning("enum options of %s not read (changes re-read instead): %s", table, exc)
                return
            options = table_options(document)
            self._known[table] = (self._clock(), options)
            self._generation += 1
            log.info("enum options of %s read: %d choice columns", table, len(options))
