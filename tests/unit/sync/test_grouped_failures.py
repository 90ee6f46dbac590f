"""Group commit (shared/sync/grouped.py) under failure, from a review: a lane stopped at host shutdown gets no write
sent for it afterwards and leaves no request running; a group is no larger than one lane's batch, so a request
neither nears the client's timeout nor is split into `$batch`es that could fail part-way (a caller told its writes
failed must have had none applied); the per-caller resends after a group failed whole go side by side; and a send
stopped part-way leaves no caller waiting for ever."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.connectors.errors import ConnectorError, NotFound, Throttled
from shared.maps.loader import load_maps
from shared.maps.model import Side, TableMap
from shared.sync.grouped import WriteGroups
from shared.sync.rows import RowWrite, Written
from shared.sync.service import Message
from tests.unit.sync.fakes import FakeRows
from tests.unit.sync.test_grouped import CUSTOMERS, GatedRows, _writes
from tests.unit.sync.test_service import Bridge, account, fno_customer


async def test_a_cancelled_caller_s_waiting_writes_are_not_sent_after_it_is_gone() -> None:
    rows, groups, m = GatedRows(), WriteGroups(), CUSTOMERS
    first = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))
    await asyncio.sleep(0)
    second = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("b")))
    await asyncio.sleep(0)
    first.cancel()
    second.cancel()  # the host stops: both lanes are cancelled
    await asyncio.gather(first, second, return_exceptions=True)
    rows.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    # "b" was never sent while its lane ran; it must not be sent after its lane was cancelled
    assert rows.requests == [["a"]], rows.requests


async def test_no_send_task_outlives_its_cancelled_callers() -> None:
    rows, groups, m = GatedRows(), WriteGroups(), CUSTOMERS
    call = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))
    await asyncio.sleep(0)
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    await asyncio.sleep(0)
    sending = groups._tables[(Side.FNO, m.name)].sending
    assert sending is not None and sending.done(), "the group's request task leaks past its callers"
    rows.gate.set()


class Slow:
    def __init__(self, seconds: float) -> None:
        self.seconds, self.requests = seconds, 0

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        self.requests += 1
        await asyncio.sleep(self.seconds)
        if len(writes) > 1 and self.requests == 2:
            raise NotFound("no company")
        return [Written(None, str(w.key["id"]), None) for w in writes]


async def test_alone_requests_are_not_serialised_behind_each_other() -> None:
    rows, groups, m = Slow(0.05), WriteGroups(), CUSTOMERS
    first = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    calls = [asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes(i))) for i in "bcdefgh"]  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(first, *calls)
    # without grouping each lane's request runs side by side: ~0.05 s; here 0.05 + 0.05 + 7 x 0.05
    assert loop.time() - started < 0.2, loop.time() - started


async def test_a_send_cancelled_while_resending_alone_leaves_no_caller_hanging() -> None:
    rows, groups, m = Slow(0.05), WriteGroups(), CUSTOMERS
    first = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    calls = [asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes(i))) for i in "bc"]  # type: ignore[arg-type]
    await asyncio.sleep(0.12)  # first done, grouped failed, now resending alone
    await groups.close()  # the bridge closing while the resends run
    _, pending = await asyncio.wait(calls, timeout=0.5)
    assert not pending, "a caller waits forever for an answer"
    await asyncio.gather(first, *calls, return_exceptions=True)


# --- through ApplyService with the in-memory fakes -----------------------------------------------------------------


class GatedFakeRows(FakeRows):
    gate: asyncio.Event | None = None

    async def write_many(self, m, writes):  # type: ignore[no-untyped-def]
        if self.gate is not None:
            await self.gate.wait()
        return await super().write_many(m, writes)


async def test_a_lane_cancelled_at_host_stop_gets_no_app_write_without_its_ledger_entry() -> None:
    b = Bridge()
    gated = GatedFakeRows(Side.DATAVERSE)
    gated.gate = asyncio.Event()
    b.dataverse = gated
    b.service.dataverse = gated
    for n in ("A1", "B1"):
        b.fno.put(CUSTOMERS_MAP, {"dataAreaId": "usmf", "CustomerAccount": n}, {"PartyType": "Organization"})
    lane_a = asyncio.create_task(b.service.apply_messages([Message(fno_customer("A1", 10, OrganizationName="A"))]))
    await asyncio.sleep(0.01)  # lane A's request to accounts is in flight
    lane_b = asyncio.create_task(b.service.apply_messages([Message(fno_customer("B1", 10, OrganizationName="B"))]))
    await asyncio.sleep(0.01)  # lane B's write waits for the next request
    lane_a.cancel()
    lane_b.cancel()  # the host stops: both lanes are cancelled, their messages stay unsettled
    await asyncio.gather(lane_a, lane_b, return_exceptions=True)
    gated.gate.set()
    await asyncio.sleep(0.05)
    # B1 was never written while lane B ran; after B was cancelled its write still goes out, with no ledger entry
    assert account(b, "B1") is None


CUSTOMERS_MAP = load_maps().maps["customers"].map


class Timed:
    """Dataverse runs a $batch's operations one after another: a request takes per-op time x its size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        self.sizes.append(len(writes))
        await asyncio.sleep(0.0005 * len(writes))
        return [Written(None, str(w.key["id"]), None) for w in writes]


async def test_a_group_is_no_larger_than_one_lane_s_batch() -> None:
    rows, groups, m = Timed(), WriteGroups(), CUSTOMERS
    lanes = [
        asyncio.create_task(groups.write_many(rows, Side.DATAVERSE, m, _writes(*(f"{lane}-{i}" for i in range(100)))))  # type: ignore[arg-type]
        for lane in range(8)
    ]
    await asyncio.gather(*lanes)
    assert max(rows.sizes) <= 100, rows.sizes  # [100, 700]: one request of 700 sequential operations


class Chunked:
    """As DataverseRows/FnoRows.write_many: one $batch per 1,000 operations; here the second is throttled."""

    def __init__(self) -> None:
        self.applied: set[str] = set()

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        await asyncio.sleep(0)
        for start in range(0, len(writes), 1000):
            if start:
                raise Throttled("slow down", retry_after=60.0, status=429)
            self.applied |= {str(w.key["id"]) for w in writes[start : start + 1000]}
        return [Written(None, str(w.key["id"]), None) for w in writes]


async def test_a_caller_told_its_writes_failed_had_none_applied() -> None:
    rows, groups, m = Chunked(), WriteGroups(), CUSTOMERS
    lanes = [
        asyncio.create_task(groups.write_many(rows, Side.DATAVERSE, m, _writes(*(f"{lane}-{i}" for i in range(100)))))  # type: ignore[arg-type]
        for lane in range(16)  # SESSION_LANES / maxConcurrentSessions back at 16 (main's values)
    ]
    results = await asyncio.gather(*lanes, return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, Throttled)]
    assert not any(f"{lane}-0" in rows.applied for lane in failed), (
        "written in the app, told it failed: no ledger entry"
    )
