"""The writes of batches applied at once (session lanes side by side), grouped per app and map: while one `$batch`
to a table is in flight, the other lanes' writes to it wait and go out together in the next (group commit).

A lane's batch holds what reached the lane in one cycle, so a short cycle — low latency — makes small batches and
many requests; grouping across lanes keeps the requests few when the machine is busy (requests in flight longer,
more writes wait for them) and costs nothing when it is quiet (nothing in flight, a batch's writes go at once). Each
caller gets the answers to its own writes, in order. A request that fails whole for a reason any request would meet
(throttled, unreachable) fails every caller in it alike; for another (one caller's write the app cannot take, such as
a company it does not know), each caller's writes are sent again alone, so that it fails that caller only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.connectors.errors import ConnectorError, Transient
from shared.maps.model import Side, TableMap
from shared.sync.ports import RowsPort
from shared.sync.rows import RowWrite, Written

Answers = list[Written | ConnectorError]
# At most one lane's batch (host.json `maxMessageBatchSize`) in a request: Dataverse runs a `$batch`'s operations one
# after another (Microsoft Learn, "Execute batch operations using the Web API"), so 8 lanes' 100 writes in one
# request would near the client's timeout, and a request split into several `$batch`es could fail part-way.
GROUP_LIMIT = 100


@dataclass(eq=False)
class _Waiting:
    writes: Sequence[RowWrite]
    answered: asyncio.Future[Answers] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Table:
    waiting: list[_Waiting] = field(default_factory=list)
    in_flight: list[_Waiting] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None

    def has_callers(self) -> bool:
        return any(not w.answered.done() for w in (*self.waiting, *self.in_flight))


def _next_group(waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
    """The callers still waiting (one cancelled meanwhile — its lane stopped — is not written for), up to
    `GROUP_LIMIT` writes (one caller at least); the rest wait for the next request."""
    live = [w for w in waiting if not w.answered.done()]
    group: list[_Waiting] = []
    size = 0
    for w in live:
        if group and size + len(w.writes) > GROUP_LIMIT:
            break
        group.append(w)
        size += len(w.writes)
    return group, live[len(group) :]


class WriteGroups:
    def __init__(self) -> None:
        self._tables: dict[tuple[Side, str], _Table] = {}

    async def write_many(self, rows: RowsPort, into: Side, m: TableMap, writes: Sequence[RowWrite]) -> Answers:
        """`rows.write_many(m, writes)`, sent with whatever other batches' writes to the same table wait meanwhile."""
        table = self._tables.setdefault((into, m.name), _Table())
        waiting = _Waiting(writes)
        table.waiting.append(waiting)
        if table.sending is None or table.sending.done():
            table.sending = asyncio.create_task(self._send(rows, m, table))
        try:
            return await waiting.answered
        except asyncio.CancelledError:
            # The lane stopped (the host is stopping): its writes are not sent after it is gone, and a request sent
            # for no caller left is cancelled with it.
            if table.sending is not None and not table.sending.done() and not table.has_callers():
                table.sending.cancel()
            raise

    async def close(self) -> None:
        """Cancel what is in flight (the bridge is closing; its callers are gone)."""
        tasks = [t.sending for t in self._tables.values() if t.sending is not None and not t.sending.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _send(rows: RowsPort, m: TableMap, table: _Table) -> None:
        group: list[_Waiting] = []
        try:
            while True:
                group, table.waiting = _next_group(table.waiting)
                if not group:
                    return
                table.in_flight = group
                try:
                    answers = await rows.write_many(m, [w for g in group for w in g.writes])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if len(group) > 1 and not getattr(exc, "retryable", False):
                        await _alone(rows, m, group)  # one caller's bad write (a company no app knows) fails it alone
                        continue
                    for g in group:  # throttled, unreachable: each caller would have met it alone, and retries later
                        if not g.answered.done():
                            g.answered.set_exception(exc)
                    continue
                start = 0
                for g in group:
                    if not g.answered.done():  # a caller that was cancelled meanwhile
                        g.answered.set_result(answers[start : start + len(g.writes)])
                    start += len(g.writes)
        finally:
            # Stopped part-way (cancelled with the loop or the bridge): no caller is left waiting for ever — told
            # its writes were not sent (a passing fault: its change is tried again).
            table.in_flight = []
            for g in [*group, *table.waiting]:
                if not g.answered.done():
                    g.answered.set_exception(Transient("not sent: the bridge stopped its write"))
                    g.answered.exception()  # retrieved: a caller gone meanwhile must not warn


async def _alone(rows: RowsPort, m: TableMap, group: list[_Waiting]) -> None:
    """Each caller's writes in a request of their own, side by side, as without grouping."""

    async def one(g: _Waiting) -> None:
        if g.answered.done():
            return  # its lane stopped meanwhile: not written for
        try:
            answers = await rows.write_many(m, g.writes)
        except Exception as exc:
            if not g.answered.done():
                g.answered.set_exception(exc)
        else:
            if not g.answered.done():
                g.answered.set_result(answers)

    await asyncio.gather(*(one(g) for g in group))
