"""A linked row deleted in one app with its notification lost is not brought back by a run: a reconciliation of
changes (and a full compare) carries the delete to the other app as the map says — customers: `delete: deactivate`,
so the Dataverse account is deactivated, and an F&O customer (F&O has no deactivation) is kept — and records it as
drift. Review finding 4: reconciliation did nothing, and the next sync re-created both rows where they were deleted.
Against the simulators' `$batch` (DELETE, PATCH statecode) and Dataverse change tracking (`$deletedEntity`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import SyncRunner, new_run
from tests.integration.initialsync.conftest import runner_on
from tests.integration.sims.conftest import Sim

FNO = {"cross-company": "true"}


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim) -> AsyncIterator[SyncRunner]:
    async with runner_on(storage_connection_string, dv, fo) as runner:
        yield runner


async def _run(runner: SyncRunner, mode: Mode) -> RunState:
    run = await runner.run(new_run(mode, runner.maps, ["customers"]))
    assert run.state == "done", run.report()
    return run


async def _accounts(dv: Sim) -> dict[str, Any]:
    return {str(r["accountnumber"]): r for r in (await dv.http.get("accounts")).json()["value"]}


async def _customers(fo: Sim) -> set[str]:
    return {str(r["CustomerAccount"]) for r in (await fo.http.get("CustomersV3", params=FNO)).json()["value"]}


async def test_a_lost_delete_is_carried_over_by_reconciliation_and_never_undone(
    runner: SyncRunner, dv: Sim, fo: Sim
) -> None:
    for number in ("LD001", "LD002"):
        r = await fo.http.post("CustomersV3", params=FNO,
                               json={"dataAreaId": "usmf", "CustomerAccount": number, "CustomerGroupId": "10",
                                     "OrganizationName": number, "PartyType": "Organization",
                                     "LanguageId": "en-us"})  # fmt: skip
        assert r.status_code == 201, r.text
    await _run(runner, Mode.RECONCILE)  # linked; the next check reads what changed since
    accounts = await _accounts(dv)
    assert {"LD001", "LD002"} <= set(accounts)
    # No one told: LD001 deleted in F&O, LD002's account deleted in Dataverse.
    gone = await fo.http.delete("CustomersV3(dataAreaId='usmf',CustomerAccount='LD001')", params=FNO)
    assert gone.is_success, gone.text
    assert (await dv.http.delete(f"accounts({accounts['LD002']['accountid']})")).is_success

    check = await _run(runner, Mode.RECONCILE)
    customers = check.progress["customers"]
    assert customers.compared == "changes" and customers.dataverse.deleted == 1 and customers.fno.created == 0
    assert customers.dataverse.created == 0  # was: nothing found in `changes`, both re-created by the next sync
    after = await _accounts(dv)
    assert after["LD001"]["statecode"] == 1 and "LD002" not in after  # deactivated; not re-created
    assert "LD001" not in await _customers(fo) and "LD002" in await _customers(fo)  # F&O cannot deactivate: kept
    drift = [d for d in await runner.runs.drift("customers") if d.run_id == check.run_id]
    assert [(d.key["CustomerAccount"], d.behind, d.action) for d in drift] == [("LD001", "dataverse", "deactivate")]

    for mode in (Mode.SYNC, Mode.RECONCILE):  # a full compare, and a check after: neither brings a row back
        again = (await _run(runner, mode)).progress["customers"]
        assert again.fno.created == again.dataverse.created == again.dataverse.deleted == 0, again.samples
    assert "LD001" not in await _customers(fo) and "LD002" not in await _accounts(dv)
