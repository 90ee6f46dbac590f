"""Apply, end to end on the local stack: changes made in one simulator reach the other through webhooks, the
broker and the dev host — with no echoes, conflicts settled by policy, missing references healed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.processes import AzuritePorts
from shared.connectors.errors import NotFound
from tests.e2e.sync_stack import SyncStack, eventually, sync_stack, unique


@pytest.fixture(scope="module")
def bridge(azurite: AzuritePorts) -> Iterator[SyncStack]:
    with sync_stack(azurite) as s:
        yield s


async def _account(s: SyncStack, company: str, number: str) -> dict[str, Any] | None:
    async with s.dataverse() as client:
        company_id = (await client.get("cdm_companies", {"cdm_companycode": company})).values["cdm_companyid"]
        try:
            row = await client.get("accounts", {"msdyn_company": uuid.UUID(company_id), "accountnumber": number})
        except NotFound:
            return None
        return row.values


async def _customer(s: SyncStack, company: str, number: str) -> dict[str, Any] | None:
    async with s.fno() as client:
        try:
            return (await client.get("CustomersV3", {"dataAreaId": company, "CustomerAccount": number})).values
        except NotFound:
            return None


async def test_customer_created_in_fno_reaches_dataverse_once(bridge: SyncStack) -> None:
    number = unique("C")
    before = await bridge.writes("dataverse", "accounts"), await bridge.writes("fno", "CustomersV3")
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {
                "OrganizationName": "  Northwind Traders  ",
                "PartyType": "Organization",
                "CustomerGroupId": "10",
                "CreditLimit": 2500,
                "CreditLimitIsMandatory": "Yes",
                "PrimaryContactEmail": "Buyer@Northwind.Example",
            },
        )
    account = await eventually(lambda: _account(bridge, "USMF", number), lambda a: a is not None)
    assert account is not None
    assert account["name"] == "Northwind Traders" and account["emailaddress1"] == "buyer@northwind.example"
    assert str(account["creditlimit"]) in ("2500", "2500.00") and account["msdyn_creditlimitismandatory"] is True
    assert account["_msdyn_customergroupid_value"] and account["customertypecode"] == 3
    await bridge.settle()
    after = await bridge.writes("dataverse", "accounts"), await bridge.writes("fno", "CustomersV3")
    assert (after[0] - before[0], after[1] - before[1]) == (
        1,
        1,
    )  # the person's create, the bridge's one write; no echo


async def test_account_updated_in_dataverse_reaches_fno_and_nothing_echoes(bridge: SyncStack) -> None:
    number = unique("D")
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Before", "PartyType": "Organization", "CustomerGroupId": "10"},
        )
    account = await eventually(lambda: _account(bridge, "USMF", number), lambda a: a is not None)
    await bridge.settle()
    before = await bridge.writes("dataverse", "accounts"), await bridge.writes("fno", "CustomersV3")
    async with bridge.dataverse() as dataverse:
        await dataverse.write("accounts", str(account["accountid"]), {"name": "After", "telephone1": "+1 555 0100"})  # type: ignore[index]
    customer = await eventually(
        lambda: _customer(bridge, "usmf", number), lambda c: bool(c and c["OrganizationName"] == "After")
    )
    assert customer is not None and customer["PrimaryContactPhone"] == "+1 555 0100"
    await bridge.settle()
    after = await bridge.writes("dataverse", "accounts"), await bridge.writes("fno", "CustomersV3")
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)


async def test_a_missing_customer_group_is_synced_first(bridge: SyncStack) -> None:
    number = unique("G")
    async with bridge.fno() as fno:  # group 30 exists in F&O only (seed)
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Needs group 30", "PartyType": "Organization", "CustomerGroupId": "30"},
        )
    account = await eventually(lambda: _account(bridge, "USMF", number), lambda a: a is not None)
    assert account is not None and account["_msdyn_customergroupid_value"]
    async with bridge.dataverse() as dataverse:
        group = await dataverse.get("msdyn_customergroups", str(account["_msdyn_customergroupid_value"]))
        assert group.values["msdyn_groupid"] == "30" and group.values["msdyn_description"] == "Retail customers"


async def test_company_striping_keeps_the_same_account_number_apart(bridge: SyncStack) -> None:
    number = unique("S")
    async with bridge.fno() as fno:
        for company, name in (("usmf", "In USMF"), ("usrt", "In USRT")):
            await fno.create(
                "CustomersV3",
                {"dataAreaId": company, "CustomerAccount": number},
                {"OrganizationName": name, "PartyType": "Organization", "CustomerGroupId": "10"},
            )
    usmf = await eventually(lambda: _account(bridge, "USMF", number), lambda a: a is not None)
    usrt = await eventually(lambda: _account(bridge, "USRT", number), lambda a: a is not None)
    assert usmf and usrt and (usmf["name"], usrt["name"]) == ("In USMF", "In USRT")
    assert usmf["_msdyn_company_value"] != usrt["_msdyn_company_value"]


async def test_delete_in_fno_deactivates_the_account(bridge: SyncStack) -> None:
    number = unique("X")
    key = {"dataAreaId": "usmf", "CustomerAccount": number}
    async with bridge.fno() as fno:
        await fno.create("CustomersV3", key, {"OrganizationName": "Short-lived", "PartyType": "Organization"})
        await eventually(lambda: _account(bridge, "USMF", number), lambda a: a is not None)
        await bridge.settle(0.5)
        await fno.delete("CustomersV3", key)
    account = await eventually(lambda: _account(bridge, "USMF", number), lambda a: bool(a and a["statecode"] == 1))
    assert account is not None and account["statuscode"] == 2
