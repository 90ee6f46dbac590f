"""A step whose write raises (a `$batch` refused whole: throttled past its retries, an app down) leaves no ledger
entry for a value the app never got — neither of the chunk whose write raised nor of the next chunk, whose entries
were being saved meanwhile. Else the redelivered step reads "the target changed, the source not" and copies the
target's stale value back into the source. Runs in process against the simulators and Azurite."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import ConnectorError, Transient
from shared.connectors.fno import FnoClient
from shared.connectors.http import NO_RETRY, ODataTransport
from shared.initialsync import io
from shared.initialsync.model import Mode, RunState
from shared.initialsync.plan import Decision
from shared.initialsync.run import SyncRunner, new_run
from shared.initialsync.store import RunStore
from shared.ledger.bulk import load_map
from shared.ledger.tables import Ledger
from shared.maps.loader import load_maps
from shared.maps.model import TableMap
from tests.integration.sims.conftest import Sim

CUSTOMERS = 12


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim) -> AsyncIterator[SyncRunner]:
    prefix = f"w{uuid.uuid4().hex[:8]}"
    # No retries: a refused `$batch` raises at once (as it does, later, after the retries in production).
    dataverse = DataverseClient(ODataTransport(dv.url + dv.simulator.dialect.root, StaticToken("t"), retry=NO_RETRY))
    fno = FnoClient(ODataTransport(fo.url + fo.simulator.dialect.root, StaticToken("t")))
    async with TableServiceClient.from_connection_string(storage_connection_string) as tables:
        yield SyncRunner(load_maps(), Ledger(tables, prefix), RunStore(tables, prefix), dataverse, fno)
    await dataverse.close()
    await fno.close()


async def _accounts(dv: Sim) -> set[str]:
    return {str(r["accountnumber"]) for r in (await dv.http.get("accounts")).json()["value"]}


def _fail_second_chunk(dv: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    """From the second chunk of customers written on, Dataverse refuses every request (503): the write raises
    while the next chunk's ledger entries are being saved."""
    real_write = io.Writer.write
    calls = 0
    first_written = asyncio.Event()  # chunks are pipelined: the second may start before the first is written

    async def write(self: io.Writer, m: TableMap, decisions: Sequence[Decision]) -> Any:
        nonlocal calls
        if m.name != "customers":
            return await real_write(self, m, decisions)
        calls += 1
        mine = calls
        if mine == 2:
            await first_written.wait()
            faults = {"error_share": 1.0, "error_status": 503}
            (await dv.admin.post("/_admin/faults", json=faults)).raise_for_status()
        try:
            return await real_write(self, m, decisions)
        finally:
            if mine == 1:
                first_written.set()

    monkeypatch.setattr(io.Writer, "write", write)


async def _step_fails(runner: SyncRunner, run: RunState, dv: Sim, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shared.initialsync.run.CHUNK", 5)
    with monkeypatch.context() as patched:
        _fail_second_chunk(dv, patched)
        with pytest.raises(ConnectorError):
            await runner.run(run)
        await asyncio.sleep(0.5)  # anything the failed step left running lands
    (await dv.admin.delete("/_admin/faults")).raise_for_status()


async def _add_customers(fo: Sim) -> None:
    for n in range(CUSTOMERS):
        r = await fo.http.post("CustomersV3", params={"cross-company": "true"},
                               json={"dataAreaId": "usmf", "CustomerAccount": f"WF{n:03d}", "CustomerGroupId": "10",
                                     "OrganizationName": f"Customer {n}", "PartyType": "Organization"})  # fmt: skip
        assert r.status_code == 201, r.text


async def test_a_write_that_raises_leaves_no_ledger_entry_for_what_it_did_not_write(
    runner: SyncRunner, dv: Sim, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_customers(fo)
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    await _step_fails(runner, run, dv, monkeypatch)

    entries, _ = await load_map(runner.ledger, "customers")
    recorded = {str(k) for e in entries.values() if str(k := e.key.get("CustomerAccount", "")).startswith("WF")}
    written = {a for a in await _accounts(dv) if a.startswith("WF")}
    assert 0 < len(written) < CUSTOMERS  # the first chunk went out, the rest did not
    assert recorded <= written, f"ledger claims rows Dataverse never got: {sorted(recorded - written)}"

    again = await runner.run(run)  # the redelivered step (faults gone) brings over the rest from its checkpoint
    assert again.state == "done", again.report()
    assert {a for a in await _accounts(dv) if a.startswith("WF")} == {f"WF{n:03d}" for n in range(CUSTOMERS)}


async def test_a_redelivered_step_does_not_copy_a_stale_target_back_into_the_source(
    runner: SyncRunner, dv: Sim, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_customers(fo)
    assert (await runner.run(new_run(Mode.SYNC, runner.maps, ["customers"]))).state == "done"
    for n in range(CUSTOMERS):  # renamed in F&O, nobody told (no webhooks here): the next run updates Dataverse
        customer = f"CustomersV3(dataAreaId='usmf',CustomerAccount='WF{n:03d}')"
        r = await fo.http.patch(customer, params={"cross-company": "true"}, json={"OrganizationName": f"Renamed {n}"})
        assert r.is_success, r.text
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    await _step_fails(runner, run, dv, monkeypatch)
    again = await runner.run(run)  # redelivered
    assert again.state == "done", again.report()

    fno = (await fo.http.get("CustomersV3", params={"cross-company": "true"})).json()["value"]
    renamed = {c["CustomerAccount"]: c["OrganizationName"] for c in fno if c["CustomerAccount"].startswith("WF")}
    assert renamed == {f"WF{n:03d}": f"Renamed {n}" for n in range(CUSTOMERS)}  # the source kept its new names
    accounts = (await dv.http.get("accounts")).json()["value"]
    names = {a["accountnumber"]: a["name"] for a in accounts if str(a["accountnumber"]).startswith("WF")}
    assert names == renamed  # and the target got them


async def test_a_step_out_of_time_stops_after_a_chunk_and_the_next_continues_from_its_cursor(
    runner: SyncRunner, dv: Sim, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are pipelined, yet a step past its deadline starts no further chunk (it still writes one), commits
    what it started, and leaves the run running at its cursor; steps continue until done, every row once."""
    await _add_customers(fo)
    monkeypatch.setattr("shared.initialsync.run.CHUNK", 5)
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    steps = 0
    while run.state != "done":
        run = await runner.run(run, budget_seconds=0.0)  # out of time as soon as a chunk has started
        steps += 1
        assert steps < 200, run.report()
    progress = run.progress["customers"]
    assert steps >= 3 and progress.processed == progress.planned  # 12 rows (and the seeded ones), 5 a step
    accounts = [str(r["accountnumber"]) for r in (await dv.http.get("accounts")).json()["value"]]
    assert sorted(a for a in accounts if a.startswith("WF")) == [f"WF{n:03d}" for n in range(CUSTOMERS)]


async def test_a_write_that_fails_part_way_keeps_the_ledger_entries_of_the_batches_that_landed(
    runner: SyncRunner, dv: Sim, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One chunk written in `$batch`es of 4: the batch carrying WF005 raises (no answer: an app down), the others
    land. The ledger keeps the entries of every row that landed — else their echoes look like changes, and the
    ledger says "never synced" of rows both apps hold — and has none for the rows of the batch that raised; the
    redelivered step brings those over."""
    await _add_customers(fo)
    monkeypatch.setattr("shared.initialsync.run.CHUNK", 100)
    monkeypatch.setattr(io, "BATCH_OPERATIONS", 4)
    real_send = io.Writer._send
    lost: set[str] = set()

    async def send(self: io.Writer, batch: list[Any]) -> Any:
        accounts = {str(d.key.get("CustomerAccount")) for _, d, _, _ in batch}
        if "WF005" in accounts:
            lost.update(accounts)
            raise Transient("503 from Dataverse, retries spent")
        return await real_send(self, batch)

    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    with monkeypatch.context() as patched:
        patched.setattr(io.Writer, "_send", send)
        with pytest.raises(Transient):
            await runner.run(run)

    everyone = {f"WF{n:03d}" for n in range(CUSTOMERS)}
    written = {a for a in await _accounts(dv) if a.startswith("WF")}
    assert lost and written == everyone - lost  # the batches around the failed one landed
    entries, _ = await load_map(runner.ledger, "customers")
    recorded = {str(e.key["CustomerAccount"]): e for e in entries.values() if e.key["CustomerAccount"] in everyone}
    assert set(recorded) == written, f"landed without a ledger entry: {sorted(written - set(recorded))}"
    assert all(e.dataverse.values.get("accountnumber") == a for a, e in recorded.items())  # as written

    again = await runner.run(run)  # the redelivered step: the landed rows compare equal, the lost ones are created
    assert again.state == "done", again.report()
    assert {a for a in await _accounts(dv) if a.startswith("WF")} == everyone
