"""A resumed step never copies the older app's values over a person's newer edit (review finding 1, data loss). The
reviewer's case: a person renamed a customer in F&O (notification lost); the run's Dataverse write failed validation,
so its ledger entry was put back; the step then failed at its checkpoint and was redelivered — and the redelivery,
taking every key of the unfinished chunk as "the app that differs from the ledger is behind", wrote Dataverse's old
name into F&O. Only an entry the unfinished chunk saved (its mark) may be read that way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.initialsync.model import Mode, RunState
from shared.initialsync.run import SyncRunner, new_run
from tests.integration.initialsync.conftest import runner_on
from tests.integration.sims.conftest import Sim

FNO = {"cross-company": "true"}
CUSTOMER = "CustomersV3(dataAreaId='usmf',CustomerAccount='OK5')"
CITY_TOO_LONG = "Llanfairpwllgwyngyll" * 5  # 100 characters: Dataverse's address1_city holds 80


@pytest.fixture
async def runner(storage_connection_string: str, dv: Sim, fo: Sim) -> AsyncIterator[SyncRunner]:
    async with runner_on(storage_connection_string, dv, fo) as runner:
        yield runner


async def test_a_step_redelivered_after_a_failed_write_keeps_the_persons_edit(
    runner: SyncRunner, dv: Sim, fo: Sim, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await fo.http.post("CustomersV3", params=FNO,
                           json={"dataAreaId": "usmf", "CustomerAccount": "OK5", "CustomerGroupId": "10",
                                 "OrganizationName": "Contoso", "PartyType": "Organization",
                                 "LanguageId": "en-us"})  # fmt: skip
    assert r.status_code == 201, r.text
    first = await runner.run(new_run(Mode.SYNC, runner.maps, ["customers"]))
    assert first.state == "done"
    # A person renames it in F&O (no notification), with a city Dataverse will refuse.
    edit = {"OrganizationName": "Renamed by a person", "DeliveryAddressCity": CITY_TOO_LONG}
    assert (await fo.http.patch(CUSTOMER, params=FNO, json=edit)).is_success

    real_save = runner.runs.save

    async def save(run: RunState) -> None:  # the checkpoint after the chunk fails (e.g. PropertyValueTooLarge)
        if run.progress["customers"].processed > 0:
            raise RuntimeError("the checkpoint could not be saved")
        await real_save(run)

    monkeypatch.setattr(runner.runs, "save", save)
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    with pytest.raises(RuntimeError):
        await runner.run(run)
    monkeypatch.setattr(runner.runs, "save", real_save)
    redelivered = await runner.runs.get(run.run_id)
    assert redelivered is not None and redelivered.progress["customers"].in_flight  # the chunk left unfinished
    await runner.run(redelivered)

    customer: dict[str, Any] = (await fo.http.get(CUSTOMER, params=FNO)).json()
    assert customer["OrganizationName"] == "Renamed by a person"  # was: "Contoso", Dataverse's older name
    errors = [e for e in await runner.ledger.errors("customers") if e.event["key"]["CustomerAccount"] == "OK5"]
    assert errors and errors[0].event["into"] == "dataverse"  # still refused there, in the error log
