"""Apply, end to end on the local stack: changes made in one simulator reach the other through webhooks, the
broker and the dev host — with no echoes, conflicts settled by policy, missing references healed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.connectors.errors import NotFound
from tests.e2e.sync_stack import (
    SyncStack,
    company_id,
    dataverse_account,
    eventually,
    fno_customer,
    sync_stack,
    synced_customer,
    unique,
)

# F&O takes it (its phone field publishes no length here), Dataverse refuses it for good: telephone1 holds 50.
# (An undefined enum symbol no longer serves: F&O itself refuses it.)
TOO_LONG = "+1 555 " + "0" * 60


@pytest.fixture(scope="module")
def bridge() -> Iterator[SyncStack]:
    # An Azurite of its own: the errors, conflicts and map states these tests read must be this stack's alone.
    with sync_stack() as s:
        yield s


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
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
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
    number, account = await synced_customer(bridge, "D")
    before = await bridge.writes("dataverse", "accounts"), await bridge.writes("fno", "CustomersV3")
    async with bridge.dataverse() as dataverse:
        await dataverse.write("accounts", str(account["accountid"]), {"name": "After", "telephone1": "+1 555 0100"})
    customer = await eventually(
        lambda: fno_customer(bridge, "usmf", number), lambda c: bool(c and c.get("OrganizationName") == "After")
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
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
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
    usmf = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
    usrt = await eventually(lambda: dataverse_account(bridge, "USRT", number), lambda a: a is not None)
    assert usmf and usrt and (usmf["name"], usrt["name"]) == ("In USMF", "In USRT")
    assert usmf["_msdyn_company_value"] != usrt["_msdyn_company_value"]


async def test_delete_in_fno_deactivates_the_account(bridge: SyncStack) -> None:
    number = unique("X")
    key = {"dataAreaId": "usmf", "CustomerAccount": number}
    async with bridge.fno() as fno:
        await fno.create("CustomersV3", key, {"OrganizationName": "Short-lived", "PartyType": "Organization"})
        await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
        await bridge.settle(0.5)
        await fno.delete("CustomersV3", key)
    account = await eventually(
        lambda: dataverse_account(bridge, "USMF", number), lambda a: bool(a and a.get("statecode") == 1)
    )
    assert account is not None and account["statuscode"] == 2


async def test_delete_in_fno_of_a_row_created_from_dataverse_deactivates_the_account(bridge: SyncStack) -> None:
    """F&O names a deleted row by its virtual-table id only; the bridge learns it from the echo of the create it made
    from Dataverse (skipped without a read) — before, such a delete was dropped as a row never synced (audit)."""
    number = unique("XD")
    company = await company_id(bridge, "USMF")
    async with bridge.dataverse() as dataverse:
        await dataverse.create(
            "accounts", {"name": "Made in Dataverse", "accountnumber": number, "customertypecode": 3},
            lookups={"msdyn_company": ("cdm_companies", str(company)), "msdyn_customergroupid": (
                "msdyn_customergroups", {"_msdyn_company_value": company, "msdyn_groupid": "10"})},
        )  # fmt: skip
    await eventually(lambda: fno_customer(bridge, "usmf", number), lambda c: c is not None)
    account = await dataverse_account(bridge, "USMF", number)
    assert account is not None
    key = {"dataAreaId": "usmf", "CustomerAccount": number}
    await bridge.settle(1.0)  # the F&O echo of the bridge's create
    async with bridge.fno() as fno:
        await fno.delete("CustomersV3", key)
    gone = await eventually(
        lambda: dataverse_account(bridge, "USMF", number), lambda a: bool(a and a.get("statecode") == 1)
    )
    assert gone is not None and gone["accountid"] == account["accountid"]


async def test_concurrent_edits_merge_with_fno_as_master_and_are_recorded(bridge: SyncStack) -> None:
    number, account = await synced_customer(bridge, "M")
    await bridge.admin("POST", "maps/customers/pause")  # hold both sides' changes so they meet for real
    try:
        async with bridge.fno() as fno:
            await fno.update(
                "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number}, {"OrganizationName": "F&O name"}
            )
        async with bridge.dataverse() as dataverse:
            await dataverse.write(
                "accounts", str(account["accountid"]), {"name": "DV name", "telephone1": "+1 555 0199"}
            )
        await bridge.settle()
        assert (await dataverse_account(bridge, "USMF", number) or {}).get("name") == "DV name"  # held, nothing applied
    finally:
        released = await bridge.admin("POST", "maps/customers/resume")
    assert released["released"] >= 2
    customer = await eventually(
        lambda: fno_customer(bridge, "usmf", number),
        lambda c: bool(c and c.get("PrimaryContactPhone") == "+1 555 0199"),
        seconds=45,  # held changes of two rows' sessions meet the dev host's session idle waits
    )
    assert customer is not None and customer["OrganizationName"] == "F&O name"  # overlapping field: the master wins
    final = await eventually(
        lambda: dataverse_account(bridge, "USMF", number), lambda a: bool(a and a.get("name") == "F&O name"), seconds=45
    )
    assert final is not None and final["telephone1"] == "+1 555 0199"  # non-overlapping: both changes kept
    conflicts = (await bridge.admin("GET", "conflicts?map=customers"))["conflicts"]
    mine = [c for c in conflicts if c["key"].get("CustomerAccount") == number]
    assert mine and mine[0]["winner"] == "fno" and mine[0]["policy"] == "merge"
    field = next(iter(mine[0]["fields"].values()))
    assert {field["source"], field["target"]} == {"F&O name", "DV name"} and field["base"] == "Original"


async def test_throttled_and_failing_targets_catch_up_when_the_fault_clears(bridge: SyncStack) -> None:
    number = unique("T")
    await bridge.faults("dataverse", throttle_share=0.7, error_share=0.3, error_status=503, retry_after=1, remaining=8)
    try:
        async with bridge.fno() as fno:
            await fno.create(
                "CustomersV3",
                {"dataAreaId": "usmf", "CustomerAccount": number},
                {"OrganizationName": "Arrives anyway", "PartyType": "Organization", "CustomerGroupId": "10"},
            )
        # Only the bridge talks to Dataverse until it has absorbed every injected fault; then we look.
        await eventually(lambda: bridge.stats("dataverse"), lambda s: s["faults"]["remaining"] == 0, seconds=60)
    finally:
        await bridge.faults("dataverse")
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None, seconds=60)
    assert account is not None and account["name"] == "Arrives anyway"


async def test_a_validation_error_is_logged_and_dead_lettered(bridge: SyncStack) -> None:
    from azure.servicebus import ServiceBusSubQueue
    from azure.servicebus.aio import ServiceBusClient

    number = unique("V")
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Bad phone", "PartyType": "Organization", "PrimaryContactPhone": TOO_LONG},
        )

    async def errors() -> list[dict[str, Any]]:
        found = (await bridge.admin("GET", "errors?map=customers"))["errors"]
        return [e for e in found if e["event"]["keys"].get("CustomerAccount") == number]

    logged = await eventually(errors, bool)
    assert "maximum allowed length of '50'" in logged[0]["message"] and logged[0]["event"]["entity"] == "CustomersV3"

    async def dead_lettered() -> list[str]:
        async with ServiceBusClient.from_connection_string(bridge.servicebus) as client:
            receiver = client.get_queue_receiver("changes", sub_queue=ServiceBusSubQueue.DEAD_LETTER)
            async with receiver:
                return [str(m) for m in await receiver.peek_messages(max_message_count=100, sequence_number=0)]

    letters = await eventually(dead_lettered, lambda found: any(number in body for body in found), seconds=60)
    assert letters
    assert await dataverse_account(bridge, "USMF", number) is None


async def test_account_created_in_dataverse_reaches_fno_once(bridge: SyncStack) -> None:
    number = unique("N")
    company = await company_id(bridge, "USMF")
    before = await bridge.writes("fno", "CustomersV3")
    async with bridge.dataverse() as dataverse:
        await dataverse.create(
            "accounts",
            {"name": "Made in Dataverse", "accountnumber": number, "customertypecode": 3, "creditlimit": 750},
            lookups={
                "msdyn_company": ("cdm_companies", str(company)),
                "msdyn_customergroupid": (
                    "msdyn_customergroups",
                    {"_msdyn_company_value": company, "msdyn_groupid": "10"},
                ),
            },
        )
    customer = await eventually(lambda: fno_customer(bridge, "usmf", number), lambda c: c is not None)
    assert customer is not None and customer["OrganizationName"] == "Made in Dataverse"
    assert customer["CustomerGroupId"] == "10" and str(customer["CreditLimit"]) in ("750", "750.00")
    await bridge.settle()
    assert await bridge.writes("fno", "CustomersV3") - before == 1  # the bridge's one write; no echo back


async def test_customer_updated_in_fno_reaches_dataverse(bridge: SyncStack) -> None:
    number, _ = await synced_customer(bridge, "U")
    before = await bridge.writes("dataverse", "accounts")
    async with bridge.fno() as fno:
        await fno.update(
            "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number}, {"PrimaryContactPhone": "+1 555 0100"}
        )
    account = await eventually(
        lambda: dataverse_account(bridge, "USMF", number), lambda a: bool(a and a.get("telephone1") == "+1 555 0100")
    )
    assert account is not None and account["name"] == "Original"
    await bridge.settle()
    assert await bridge.writes("dataverse", "accounts") - before == 1


async def test_group_deleted_in_dataverse_is_deleted_in_fno(bridge: SyncStack) -> None:
    group = unique("Q")[-6:]
    key = {"dataAreaId": "usmf", "CustomerGroupId": group}
    company = await company_id(bridge, "USMF")

    async def in_dataverse() -> dict[str, Any] | None:
        async with bridge.dataverse() as client:
            try:
                return (
                    await client.get("msdyn_customergroups", {"_msdyn_company_value": company, "msdyn_groupid": group})
                ).values
            except NotFound:
                return None

    async def in_fno() -> dict[str, Any] | None:
        async with bridge.fno() as client:
            try:
                return (await client.get("CustomerGroups", key)).values
            except NotFound:
                return None

    async with bridge.fno() as fno:
        await fno.create("CustomerGroups", key, {"Description": "Short-lived group"})
    row = await eventually(in_dataverse, lambda r: r is not None)
    assert row is not None
    await bridge.settle(0.5)
    async with bridge.dataverse() as dataverse:
        await dataverse.delete("msdyn_customergroups", str(row["msdyn_customergroupid"]))
    assert await eventually(in_fno, lambda r: r is None) is None  # the map's delete behaviour: delete


async def test_notifications_delivered_twice_and_shuffled_reach_the_same_final_state(bridge: SyncStack) -> None:
    rows = [await synced_customer(bridge, "W") for _ in range(3)]
    await bridge.delivery("fno", duplicate=True, shuffle=True, window_seconds=1.0)
    await bridge.delivery("dataverse", duplicate=True, shuffle=True, window_seconds=1.0)
    try:
        async with bridge.fno() as fno, bridge.dataverse() as dataverse:
            for version in range(1, 4):
                for number, account in rows:
                    await fno.update(
                        "CustomersV3",
                        {"dataAreaId": "usmf", "CustomerAccount": number},
                        {"OrganizationName": f"{number} v{version}"},
                    )
                    await dataverse.write("accounts", str(account["accountid"]), {"telephone1": f"+1 555 010{version}"})
        for number, _ in rows:
            account = await eventually(
                lambda n=number: dataverse_account(bridge, "USMF", n),
                lambda a, n=number: bool(a and a["name"] == f"{n} v3"),
                seconds=45,
            )
            customer = await eventually(
                lambda n=number: fno_customer(bridge, "usmf", n),
                lambda c: bool(c and c.get("PrimaryContactPhone") == "+1 555 0103"),
                seconds=45,
            )
            assert account is not None and account["telephone1"] == "+1 555 0103"
            assert customer is not None and customer["OrganizationName"] == f"{number} v3"
    finally:
        await bridge.delivery("fno")
        await bridge.delivery("dataverse")


async def test_pause_holds_changes_and_resume_applies_them_in_order(bridge: SyncStack) -> None:
    number, _ = await synced_customer(bridge, "P")
    await bridge.admin("POST", "maps/customers/pause")
    try:
        async with bridge.fno() as fno:
            for version in range(1, 4):
                await fno.update(
                    "CustomersV3",
                    {"dataAreaId": "usmf", "CustomerAccount": number},
                    {"OrganizationName": f"v{version}"},
                )
                await bridge.settle(0.3)

        async def held() -> int:
            found = next(m for m in (await bridge.admin("GET", "status"))["maps"] if m["map"] == "customers")
            return int(found["held"])

        # All three held before the resume (a fixed wait was too short for the third under load).
        assert await eventually(held, lambda n: n >= 3, seconds=30) >= 3
        maps = {m["map"]: m for m in (await bridge.admin("GET", "maps"))["maps"]}
        assert maps["customers"]["state"] == "paused"
        assert (await dataverse_account(bridge, "USMF", number) or {}).get("name") == "Original"  # held, none applied
    finally:
        released = await bridge.admin("POST", "maps/customers/resume")
    assert released["released"] >= 3 and released["state"] == "running"
    account = await eventually(
        lambda: dataverse_account(bridge, "USMF", number), lambda a: bool(a and a.get("name") == "v3")
    )
    assert account is not None


async def test_an_alert_rule_pauses_a_map_after_repeated_errors(bridge: SyncStack) -> None:
    numbers = [unique("A") for _ in range(5)]
    try:
        async with bridge.fno() as fno:
            for number in numbers:
                await fno.create(
                    "CustomersV3",
                    {"dataAreaId": "usmf", "CustomerAccount": number},
                    {"OrganizationName": "Bad phone", "PartyType": "Organization", "PrimaryContactPhone": TOO_LONG},
                )

        async def customers_map() -> dict[str, Any]:
            found: dict[str, Any] = next(
                m for m in (await bridge.admin("GET", "maps"))["maps"] if m["map"] == "customers"
            )
            return found

        state = await eventually(customers_map, lambda m: m["state"] == "paused", seconds=60)
        assert state["reason"].startswith("alert: 5 or more errors")
    finally:
        await bridge.admin("POST", "maps/customers/resume")
