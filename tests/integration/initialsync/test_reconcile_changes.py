"""Reconciliation after the first reads only what changed: the first check compares every row and keeps
Dataverse's delta link; the next reads the delta (Microsoft Learn, "Use change tracking to synchronize data with
external systems") and compares only rows changed on either side since — counted by the simulators. Runs in
process against in-process simulators and Azurite (no dev host): the run's own code, the apps' real HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport
from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import SyncRunner, new_run
from shared.initialsync.store import RunStore
from shared.ledger.tables import Ledger
from shared.maps.loader import load_maps
from tests.integration.sims.conftest import Sim

CUSTOMERS = 30


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim) -> AsyncIterator[SyncRunner]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    dataverse = DataverseClient(ODataTransport(dv.url + dv.simulator.dialect.root, StaticToken("t")))
    fno = FnoClient(ODataTransport(fo.url + fo.simulator.dialect.root, StaticToken("t")))
    async with TableServiceClient.from_connection_string(storage_connection_string) as tables:
        yield SyncRunner(load_maps(), Ledger(tables, prefix), RunStore(tables, prefix), dataverse, fno)
    await dataverse.close()
    await fno.close()


async def test_a_plan_step_counts_every_row_whatever_its_budget(
    runner: SyncRunner, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan writes nothing, so its step never stops half-way for time: a large map whose reading alone spends
    the step's budget would otherwise advance one chunk per step, re-reading both apps each time."""
    monkeypatch.setattr("shared.initialsync.run.CHUNK", 5)
    for n in range(12):
        r = await fo.http.post("CustomersV3", params={"cross-company": "true"},
                               json={"dataAreaId": "usmf", "CustomerAccount": f"PB{n:03d}", "CustomerGroupId": "10",
                                     "OrganizationName": f"Plan {n}", "PartyType": "Organization"})  # fmt: skip
        assert r.status_code == 201, r.text
    run = await runner.run(new_run(Mode.PLAN, runner.maps, ["customers"]), budget_seconds=0.0)
    customers = run.progress["customers"]
    assert run.state == "done" and customers.processed == customers.planned >= 12


async def _reconcile(runner: SyncRunner) -> RunState:
    run = await runner.run(new_run(Mode.RECONCILE, runner.maps, ["customers"]))
    assert run.state == "done", run.report()
    return run


async def _cost(sim: Sim) -> tuple[int, int]:
    stats = (await sim.admin.get("/_admin/stats")).json()
    return int(stats["requests"]), int(stats["rows_read"])


async def test_a_check_after_the_first_reads_and_compares_only_what_changed(
    runner: SyncRunner, dv: Sim, fo: Sim
) -> None:
    for n in range(CUSTOMERS):
        r = await fo.http.post("CustomersV3", params={"cross-company": "true"},
                               json={"dataAreaId": "usmf", "CustomerAccount": f"RC{n:03d}", "CustomerGroupId": "10",
                                     "OrganizationName": f"Customer {n}", "PartyType": "Organization",
                                     "LanguageId": "en-us"})  # fmt: skip
        assert r.status_code == 201, r.text
    first = (await _reconcile(runner)).progress["customers"]
    assert first.compared == "full" and first.dataverse.created >= CUSTOMERS
    again = (await _reconcile(runner)).progress["customers"]  # the delta holds the rows the first check wrote
    assert again.compared == "changes" and again.dataverse.read == first.dataverse.created
    assert again.fno.updated == again.dataverse.updated == again.dataverse.created == 0

    dv_before = await _cost(dv)
    quiet = (await _reconcile(runner)).progress["customers"]  # nothing changed since
    assert quiet.compared == "changes" and quiet.planned == 0 and quiet.dataverse.read == 0
    dv_after = await _cost(dv)
    # Only the small referenced tables (companies, groups: read whole per map to resolve lookups), no account.
    assert dv_after[1] - dv_before[1] <= 3 * _reference_rows(dv) < CUSTOMERS

    # Apart without anyone told (no webhooks here): one row changed in each app.
    account = (await dv.http.get("accounts", params={"$filter": "accountnumber eq 'RC007'"})).json()["value"][0]
    assert (await dv.http.patch(f"accounts({account['accountid']})", json={"name": "Renamed in Dataverse"})).is_success
    changed = await fo.http.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='RC011')",
                                  params={"cross-company": "true"},
                                  json={"OrganizationName": "Renamed in F&O"})  # fmt: skip
    assert changed.is_success, changed.text
    dv_before = await _cost(dv)
    repaired = await _reconcile(runner)
    progress = repaired.progress["customers"]
    assert progress.compared == "changes" and progress.planned == 2  # the two changed rows, nothing else
    assert progress.dataverse.read == 2  # the changed account, and the changed customer's counterpart
    assert progress.fno.updated == 1 and progress.dataverse.updated == 1
    assert (await _cost(dv))[0] - dv_before[0] <= 12  # a handful of requests, not a page per 5,000 rows
    names = {r["accountnumber"]: r["name"] for r in (await dv.http.get("accounts")).json()["value"]}
    assert names["RC011"] == "Renamed in F&O"
    customer = (await fo.http.get("CustomersV3(dataAreaId='usmf',CustomerAccount='RC007')",
                                  params={"cross-company": "true"})).json()  # fmt: skip
    assert customer["OrganizationName"] == "Renamed in Dataverse"
    drift = await runner.runs.drift("customers")
    assert {d.key["CustomerAccount"] for d in drift if d.run_id == repaired.run_id} == {"RC007", "RC011"}


def _reference_rows(sim: Sim) -> int:
    """Rows of the referenced tables (companies, groups) the run reads whole to resolve lookups: small, and not
    the map's own rows."""
    store: Any = sim.simulator.store
    return sum(store.count(s) for s in ("cdm_companies", "msdyn_customergroups"))
