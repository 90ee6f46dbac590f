"""The maps' check against both apps, end to end: run once per process before the first change, a map that fails it
is `invalid` and its changes are held (never applied row by row, never lost), and a fixed schema releases them —
on the on-demand check or on resume. Also: an F&O customer whose enums arrive as option-set values reaches
Dataverse right with one app request — the bridge's write — its enums decoded with the virtual table's options
(read once per process), not re-read through OData."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.connectors.errors import NotFound
from tests.e2e.sync_stack import SyncStack, company_id, dataverse_account, eventually, sync_stack, unique


@pytest.fixture(scope="module")
def bridge() -> Iterator[SyncStack]:
    # An Azurite of its own: the session's holds other stacks' ledger rows and error entries.
    with sync_stack() as s:
        yield s


async def fno_schema(bridge: SyncStack, change: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(f"{bridge.fno_url}/_admin/schema", json=change)).raise_for_status()


def description_length(length: int | None) -> dict[str, Any]:
    """F&O's CustomerGroups.Description shortened (or given no length): Dataverse's 100 characters no longer fit."""
    return {"entity_set": "CustomerGroups", "alter": [{"name": "Description", "max_length": length}]}


async def group_in_dataverse(bridge: SyncStack, group: str) -> dict[str, Any] | None:
    company = await company_id(bridge, "USMF")
    async with bridge.dataverse() as client:
        try:
            key = {"_msdyn_company_value": company, "msdyn_groupid": group}
            return (await client.get("msdyn_customergroups", key)).values
        except NotFound:
            return None


async def states(bridge: SyncStack) -> dict[str, dict[str, Any]]:
    return {m["map"]: m for m in (await bridge.admin("GET", "maps"))["maps"]}


async def test_a_map_failing_the_check_at_start_up_is_held_and_a_fixed_schema_releases_it(bridge: SyncStack) -> None:
    await fno_schema(bridge, description_length(5))  # before the bridge has applied anything
    group = unique("H")[-6:]
    async with bridge.fno() as fno:
        await fno.create("CustomerGroups", {"dataAreaId": "usmf", "CustomerGroupId": group}, {"Description": "Held"})
    maps = await eventually(lambda: states(bridge), lambda s: s["customer_groups"]["state"] == "invalid")
    problems = maps["customer_groups"]["problems"]
    assert {"field": "fno CustomerGroups.Description",
            "reason": "text of up to 100 characters into a column of 5 (shorten it with `text: {max_length: …}`, "
                      "or lengthen the column)"} in problems  # fmt: skip
    assert maps["customers"]["state"] == "running" and maps["companies"]["state"] == "running"
    number = unique("K")  # a running map's change that needs the held group: no healing through the invalid map
    async with bridge.fno() as fno:
        values = {"OrganizationName": "Waits", "PartyType": "Organization", "CustomerGroupId": group}
        await fno.create("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number}, values)
    await bridge.settle()
    assert await group_in_dataverse(bridge, group) is None  # held: not applied, and not in the error log
    assert not (await bridge.admin("GET", "errors?map=customer_groups"))["errors"]
    assert await dataverse_account(bridge, "USMF", number) is None  # deferred until the group can be synced

    await fno_schema(bridge, description_length(None))
    report = await bridge.admin("GET", "maps/check")
    assert report["ok"] is True and report["released"] == {"customer_groups": 1}
    row = await eventually(lambda: group_in_dataverse(bridge, group), lambda r: r is not None)
    assert row is not None and row["msdyn_description"] == "Held"
    assert (await states(bridge))["customer_groups"]["state"] == "running"
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None, 60)
    assert account is not None and account["_msdyn_customergroupid_value"] == row["msdyn_customergroupid"]


async def accounts_named(bridge: SyncStack, number: str) -> list[dict[str, Any]]:
    """Read through the simulator's admin API, which its request counter leaves out."""
    async with httpx.AsyncClient(timeout=30) as http:
        rows = (await http.get(f"{bridge.dataverse_url}/_admin/tables/accounts")).json()["value"]
    return [r for r in rows if r.get("accountnumber") == number]


async def test_an_fno_customer_with_enums_reaches_dataverse_right_with_one_request(bridge: SyncStack) -> None:
    async def create(number: str) -> dict[str, Any]:
        async with bridge.fno() as fno:  # one request to F&O: the person's
            await fno.create(
                "CustomersV3",
                {"dataAreaId": "usmf", "CustomerAccount": number},
                {"OrganizationName": "Enum Traders", "PartyType": "Organization", "CustomerGroupId": "10",
                 "CreditLimitIsMandatory": "Yes", "IsOneTimeCustomer": "No"},
            )  # fmt: skip
        [account] = await eventually(lambda: accounts_named(bridge, number), lambda a: len(a) == 1)
        await bridge.settle()
        return account

    await create(unique("E"))  # the first may read the virtual table's options: once per process, not per change
    before = [(await bridge.stats(app))["requests"] for app in ("fno", "dataverse")]
    # The data event carries 200000002 / 200000001 / 200000000: decoded to Organization / Yes / No at ingest.
    account = await create(unique("E"))
    after = [(await bridge.stats(app))["requests"] for app in ("fno", "dataverse")]
    assert account["name"] == "Enum Traders" and account["customertypecode"] == 3
    assert account["msdyn_creditlimitismandatory"] is True and account["msdyn_onetimecustomer"] is False
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)  # the person's create; the bridge's one write


async def test_an_invalid_map_runs_again_when_resumed_with_a_fixed_schema(bridge: SyncStack) -> None:
    await fno_schema(bridge, description_length(5))
    report = await bridge.admin("GET", "maps/check")
    assert report["ok"] is False and {p["map"] for p in report["problems"]} == {"customer_groups"}
    group = unique("R")[-6:]
    async with bridge.fno() as fno:
        await fno.create("CustomerGroups", {"dataAreaId": "usmf", "CustomerGroupId": group}, {"Description": "Later"})
    await bridge.settle()
    assert await group_in_dataverse(bridge, group) is None
    still = await bridge.admin("POST", "maps/customer_groups/resume")  # the schema is still wrong: stays invalid
    assert still["state"] == "invalid" and still["released"] == 0
    await fno_schema(bridge, description_length(None))
    resumed = await bridge.admin("POST", "maps/customer_groups/resume")
    assert resumed["state"] == "running" and resumed["released"] == 1
    assert await eventually(lambda: group_in_dataverse(bridge, group), lambda r: r is not None) is not None
