"""A run writes nothing into a paused or invalid map — as live sync holds its changes (README, "Held?") — and says
so in its report; a plan still reports it (it writes nothing). Once the map is resumed, rerun-failed carries the run
on. Review finding 5: a reconcile run (and the timer's, every interval) wrote into a paused map."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.initialsync import liveness
from shared.initialsync.model import Mode
from shared.initialsync.run import SyncRunner, new_run
from tests.integration.initialsync.conftest import runner_on
from tests.integration.sims.conftest import Sim


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim) -> AsyncIterator[SyncRunner]:
    async with runner_on(storage_connection_string, dv, fo) as runner:
        yield runner


async def _accounts(dv: Sim) -> set[str]:
    return {str(r["accountnumber"]) for r in (await dv.http.get("accounts")).json()["value"]}


@pytest.mark.parametrize("state", ["paused", "invalid"])
async def test_a_run_writes_nothing_into_a_held_map_and_carries_on_once_resumed(
    runner: SyncRunner, dv: Sim, fo: Sim, state: str
) -> None:
    r = await fo.http.post("CustomersV3", params={"cross-company": "true"},
                           json={"dataAreaId": "usmf", "CustomerAccount": "HM001", "CustomerGroupId": "10",
                                 "OrganizationName": "Held", "PartyType": "Organization"})  # fmt: skip
    assert r.status_code == 201, r.text
    await runner.ledger.set_map_state("customers", state, "maintenance")
    plan = await runner.run(new_run(Mode.PLAN, runner.maps, ["customers"]))
    assert plan.state == "done" and plan.progress["customers"].dataverse.created >= 1  # a plan only counts
    for mode in (Mode.RECONCILE, Mode.SYNC):
        run = await runner.run(new_run(mode, runner.maps, ["customers"]))
        customers = run.progress["customers"]
        assert run.state == "held" and customers.state == "held", run.report()
        assert f"the map is {state}: maintenance" in customers.message and "customers" in run.message
        assert run.progress["customer_groups"].state == "done"  # the maps it depends on are not held
        assert "HM001" not in await _accounts(dv)  # was: written (the reconcile timer did the same every tick)
    saved = await runner.runs.get(run.run_id)
    assert saved is not None and saved.state == "held" and liveness.resumable(saved)

    await runner.ledger.set_map_state("customers", "running")
    liveness.resume(saved)  # what rerun-failed does (then queues it)
    again = await runner.run(saved)
    assert again.state == "done" and again.progress["customers"].dataverse.created >= 1
    assert "HM001" in await _accounts(dv)
