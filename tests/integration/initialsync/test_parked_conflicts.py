"""With `conflict.policy: manual` a pair changed differently in both apps is parked as an open conflict for a person
(README) — once: a later run that meets the same row and the same difference still open adds no other (review
finding 7: every run added another open conflict for the row). A different difference is a new conflict."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from local.processes import ROOT
from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import SyncRunner, new_run
from shared.maps.loader import MapSet, load_maps
from tests.integration.initialsync.conftest import runner_on
from tests.integration.sims.conftest import Sim

CUSTOMER = "CustomersV3(dataAreaId='usmf',CustomerAccount='PC001')"
FNO = {"cross-company": "true"}


@pytest.fixture
def manual(tmp_path: Path) -> MapSet:
    """The maps, customers' conflict policy `manual`."""
    for f in (ROOT / "maps" / "tables").glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    customers = tmp_path / "customers.yaml"
    customers.write_text(customers.read_text().replace("policy: merge", "policy: manual"))
    maps = load_maps(tmp_path.glob("*.yaml"))
    assert str(maps.maps["customers"].map.conflict.policy) == "manual"
    return maps


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim, manual: MapSet) -> AsyncIterator[SyncRunner]:
    async with runner_on(storage_connection_string, dv, fo, manual) as runner:
        yield runner


async def _sync(runner: SyncRunner) -> RunState:
    run = await runner.run(new_run(Mode.SYNC, runner.maps, ["customers"]))
    assert run.state == "done", run.report()
    return run


async def _rename(dv: Sim, fo: Sim, in_fno: str, in_dataverse: str) -> None:
    assert (await fo.http.patch(CUSTOMER, params=FNO, json={"OrganizationName": in_fno})).is_success
    account = (await dv.http.get("accounts", params={"$filter": "accountnumber eq 'PC001'"})).json()["value"][0]
    assert (await dv.http.patch(f"accounts({account['accountid']})", json={"name": in_dataverse})).is_success


async def _open(runner: SyncRunner) -> list[dict[str, str]]:
    found = [c for c in await runner.ledger.conflicts("customers") if c.key.get("CustomerAccount") == "PC001"]
    return [{k: v["dataverse"] for k, v in c.fields.items()} for c in found if c.status == "open"]


async def test_a_parked_conflict_is_recorded_once_per_difference(runner: SyncRunner, dv: Sim, fo: Sim) -> None:
    r = await fo.http.post("CustomersV3", params=FNO,
                           json={"dataAreaId": "usmf", "CustomerAccount": "PC001", "CustomerGroupId": "10",
                                 "OrganizationName": "Contoso", "PartyType": "Organization",
                                 "LanguageId": "en-us"})  # fmt: skip
    assert r.status_code == 201, r.text
    await _sync(runner)  # created in Dataverse, linked
    await _rename(dv, fo, "F&O's name", "Dataverse's name")  # both changed since (notifications lost)
    first = (await _sync(runner)).progress["customers"]
    assert first.dataverse.conflicts == 1 and first.fno.updated == first.dataverse.updated == 0
    assert await _open(runner) == [{"name": "Dataverse's name"}]
    await _sync(runner)  # the same difference, still open
    assert await _open(runner) == [{"name": "Dataverse's name"}]  # was: two open conflicts for the row
    await _rename(dv, fo, "F&O's name", "Another name")  # a different difference: a new one for the person
    await _sync(runner)
    assert sorted(c["name"] for c in await _open(runner)) == ["Another name", "Dataverse's name"]
