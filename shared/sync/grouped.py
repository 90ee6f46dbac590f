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

from shared.connectors.errors import ConnectorError
from shared.maps.model import Side, TableMap
from shared.sync.ports import RowsPort
from shared.sync.rows import RowWrite, Written

Answers = list[Written | ConnectorError]


@dataclass(eq=False)
class _Waiting:
    writes: Sequence[RowWrite]
    answered: asyncio.Future[Answers] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class _Table:
    waiting: list[_Waiting] = field(default_factory=list)
    sending: asyncio.Task[None] | None = None


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
        return await waiting.answered

    @staticmethod
    async def _send(rows: RowsPort, m: TableMap, table: _Table) -> None:
        while table.waiting:
            group, table.waiting = table.waiting, []
            try:
                answers = await rows.write_many(m, [w for g in group for w in g.writes])
            except asyncio.CancelledError:
                for g in group + table.waiting:
                    g.answered.cancel()
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


async def _alone(rows: RowsPort, m: TableMap, group: list[_Waiting]) -> None:
    """Each caller's writes in a request of their own, as without grouping."""
    for g in group:
        try:
            answers = await rows.write_many(m, g.writes)
        except Exception as exc:
            if not g.answered.done():
                g.answered.set_exception(exc)
        else:
            if not g.answered.done():
                g.answered.set_result(answers)
