"""The simulators send the change notifications the real apps send, in their real formats: one per committed
write, with the write's tag and the registered images (Dataverse), or as a data event (F&O)."""

from __future__ import annotations

import uuid

import httpx

from shared.events.dataverse import parse_dataverse
from shared.events.fno import parse_fno
from shared.events.model import ChangeEvent, Operation
from shared.maps.loader import load_maps
from shared.registration.dataverse import register, remove
from shared.registration.plan import dataverse_plan
from tests.integration.connectors.helpers import dataverse, fno, receiver


async def test_dataverse_write_sends_one_webhook_with_tag_and_images(dataverse_sim: str) -> None:
    async with receiver() as hook, dataverse(dataverse_sim) as client:
        name = f"test-{uuid.uuid4().hex[:6]}"
        await register(client, dataverse_plan(load_maps(), hook.url, name), "the-key")
        try:
            company = (await client.get("cdm_companies", {"cdm_companycode": "USMF"})).values["cdm_companyid"]
            key = {"_msdyn_company_value": uuid.UUID(company), "accountnumber": f"W-{uuid.uuid4().hex[:8]}"}
            await client.write("accounts", key, {"name": "created"}, tag="bridge:w1")
            await hook.wait_for(1)
            await client.write("accounts", key, {"name": "updated", "telephone1": "555"})
            await hook.wait_for(2)
            await client.write("accounts", key, {"fax": "not a filtering attribute? it is mapped"})
            await hook.wait_for(3)
        finally:
            await remove(client, name)
        headers, body = hook.received[0]
        assert "code=the-key" in headers["query"]
        assert headers["x-ms-dynamics-entity-name"] == "account" and headers["x-ms-dynamics-request-name"] == "Create"
        [created] = parse_dataverse(body, headers)
        assert isinstance(created, ChangeEvent)
        assert created.operation is Operation.CREATE and created.write_tag == "bridge:w1"
        assert created.fields["name"] == "created" and created.fields["msdyn_company"]["id"] == company.lower()
        [updated] = parse_dataverse(hook.received[1][1], hook.received[1][0])
        assert isinstance(updated, ChangeEvent) and updated.write_tag is None
        assert updated.fields["name"] == "updated" and updated.fields["accountnumber"] == key["accountnumber"]
        assert set(updated.changed_fields) >= {"name", "telephone1"}
        assert int(updated.source_version or 0) > int(created.source_version or 0)


async def test_dataverse_steps_respect_filtering_attributes_and_removal(dataverse_sim: str) -> None:
    async with receiver() as hook, dataverse(dataverse_sim) as client:
        name = f"test-{uuid.uuid4().hex[:6]}"
        await register(client, dataverse_plan(load_maps(), hook.url, name), "k")
        company = (await client.get("cdm_companies", {"cdm_companycode": "USMF"})).values["cdm_companyid"]
        key = {"_msdyn_company_value": uuid.UUID(company), "accountnumber": f"F-{uuid.uuid4().hex[:8]}"}
        await client.write("accounts", key, {"name": "x"})
        await hook.wait_for(1)
        await client.write("accounts", key, {"statecode": 0})  # not a column any map reads
        await remove(client, name)
        await client.write("accounts", key, {"name": "after removal"})
        import asyncio

        await asyncio.sleep(0.5)
        assert len(hook.received) == 1


async def test_fno_write_sends_a_data_event(fno_sim: str) -> None:
    async with receiver() as hook, fno(fno_sim) as client:
        async with httpx.AsyncClient() as http:
            (await http.post(f"{fno_sim}/_admin/data-events", json={"url": hook.url})).raise_for_status()
        key = {"dataAreaId": "usmf", "CustomerGroupId": f"G{uuid.uuid4().hex[:6]}"}
        await client.create("CustomerGroups", key, {"Description": "new group"})
        await hook.wait_for(1)
        await client.update("CustomerGroups", key, {"Description": "renamed"})
        await hook.wait_for(2)
        await client.delete("CustomerGroups", key)
        await hook.wait_for(3)
        maps = load_maps()
        events = [parse_fno(body, headers, {}, maps)[0] for headers, body in hook.received]
        assert all(isinstance(e, ChangeEvent) for e in events)
        created, updated, deleted = events
        assert (
            isinstance(created, ChangeEvent) and isinstance(updated, ChangeEvent) and isinstance(deleted, ChangeEvent)
        )
        assert created.entity == "CustomerGroups" and created.operation is Operation.CREATE
        assert created.keys == key and created.fields["Description"] == "new group"
        assert updated.fields["Description"] == "renamed" and updated.row_id == created.row_id
        assert deleted.operation is Operation.DELETE and deleted.row_id == created.row_id
