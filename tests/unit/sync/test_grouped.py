"""Group commit of concurrent batches' writes (`shared.sync.grouped`): one request while another is in flight, each
caller answered for its own writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from shared.connectors.errors import ConnectorError, NotFound, Throttled
from shared.maps.loader import load_maps
from shared.maps.model import Side, TableMap
from shared.maps.transform import LookupRef
from shared.sync.grouped import WriteGroups
from shared.sync.rows import Current, RowWrite, Written


class GatedRows:
    """Rows whose `write_many` waits for the test to open the gate; it records each request's writes."""

    def __init__(self, fail: ConnectorError | None = None) -> None:
        self.requests: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail = fail  # every request fails so
        self.bad = ""  # a request holding a write to this row fails whole, not retryable (a company no app knows)

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        self.requests.append([str(w.key["id"]) for w in writes])
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if any(w.key["id"] == self.bad for w in writes):
            raise NotFound(f"no company for {self.bad}")
        return [Written(f'W/"{w.key["id"]}"', str(w.key["id"]), None) for w in writes]

    async def read(self, m: TableMap, key: Mapping[str, Any] | str) -> Current | None:
        raise NotImplementedError

    async def write(
        self, m: TableMap, key: Mapping[str, Any], values: Mapping[str, Any],
        lookups: Mapping[str, LookupRef | None], *, if_match: str | None, create: bool, tag: str,
    ) -> Written:  # fmt: skip
        raise NotImplementedError

    async def delete(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        raise NotImplementedError

    async def deactivate(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        raise NotImplementedError

    async def company_code(self, company_id: str) -> str | None:
        return None


CUSTOMERS = load_maps().maps["customers"].map


def _writes(*ids: str) -> list[RowWrite]:
    return [RowWrite({"id": i}, {"name": i}, {}, if_match=None, create=True, tag="") for i in ids]


async def test_writes_waiting_while_a_request_is_in_flight_go_out_together_each_answered_its_own() -> None:
    rows, groups, m = GatedRows(), WriteGroups(), CUSTOMERS
    first = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))
    await asyncio.sleep(0)
    second = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("b", "c")))
    third = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("d")))
    await asyncio.sleep(0)
    rows.gate.set()
    answers = await asyncio.gather(first, second, third)
    assert rows.requests == [["a"], ["b", "c", "d"]]  # the two that waited: one request
    assert [[a.row_id for a in answer if isinstance(a, Written)] for answer in answers] == [["a"], ["b", "c"], ["d"]]


async def test_another_table_or_app_is_not_held_back_by_a_request_in_flight() -> None:
    rows, other, groups, m = GatedRows(), GatedRows(), WriteGroups(), CUSTOMERS
    held = asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes("a")))
    await asyncio.sleep(0)
    other.gate.set()
    assert [
        a.row_id for a in await groups.write_many(other, Side.DATAVERSE, m, _writes("x")) if isinstance(a, Written)
    ] == ["x"]
    rows.gate.set()
    await held


async def test_a_request_that_fails_whole_fails_every_caller_in_it_alike() -> None:
    rows, groups, m = GatedRows(fail=Throttled("slow down", retry_after=1.0, status=429)), WriteGroups(), CUSTOMERS
    calls = [asyncio.create_task(groups.write_many(rows, Side.FNO, m, _writes(i))) for i in "abc"]
    await asyncio.sleep(0)
    rows.gate.set()
    for call in calls:
        with pytest.raises(Throttled):
            await call
    rows.fail, rows.gate = None, asyncio.Event()
    rows.gate.set()
    assert len(await groups.write_many(rows, Side.FNO, m, _writes("d"))) == 1  # and the next one goes out


async def test_a_request_failed_whole_by_one_caller_s_bad_write_fails_that_caller_alone() -> None:
    rows, groups, m = GatedRows(), WriteGroups(), CUSTOMERS
    rows.bad = "bad"
    first = asyncio.create_task(groups.write_many(rows, Side.DATAVERSE, m, _writes("a")))
    await asyncio.sleep(0)
    good = asyncio.create_task(groups.write_many(rows, Side.DATAVERSE, m, _writes("b")))
    bad = asyncio.create_task(groups.write_many(rows, Side.DATAVERSE, m, _writes("bad", "c")))
    await asyncio.sleep(0)
    rows.gate.set()
    assert [a.row_id for a in await first if isinstance(a, Written)] == ["a"]
    assert [a.row_id for a in await good if isinstance(a, Written)] == ["b"]
    with pytest.raises(NotFound):
        await bad
    assert rows.requests == [["a"], ["b", "bad", "c"], ["b"], ["bad", "c"]]  # together, then each alone
