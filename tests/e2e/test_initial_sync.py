"""Initial sync, end to end on the local stack: data both apps held before the bridge was connected converges as
the maps say — through `POST /api/maps/{name}/sync`, the `syncsteps` queue and the dev host — with a plan that
writes nothing, a second run that writes nothing, and failed rows rerun after their cause is fixed."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableServiceClient

from local.processes import ROOT
from shared.ledger.tables import Ledger
from tests import stack
from tests.e2e.sync_stack import KEYS, SyncStack, company_id, dataverse_account, eventually, fno_customer, sync_stack

CITY_TOO_LONG = "Llanfairpwllgwyngyll" * 5  # 100 characters: Dataverse's address1_city holds 80


async def _customer(s: SyncStack, number: str, **values: Any) -> None:
    async with s.fno() as fno:
        await fno.create("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number},
                         {"OrganizationName": "Contoso", "PartyType": "Organization", "CustomerGroupId": "10",
                          "LanguageId": "en-us"} | values)  # fmt: skip


async def _account(s: SyncStack, number: str, group: str = "10", **values: Any) -> None:
    group_key = {"_msdyn_company_value": await company_id(s, "USMF"), "msdyn_groupid": group}
    lookups = {"msdyn_company": ("cdm_companies", {"cdm_companycode": "USMF"}),
               "msdyn_customergroupid": ("msdyn_customergroups", group_key)}  # fmt: skip
    async with s.dataverse() as dv:
        await dv.create("accounts", {"accountnumber": number, "name": "Contoso", "customertypecode": 3,
                                     "address1_addresstypecode": 2} | values, lookups=lookups)  # fmt: skip


async def existing_data(s: SyncStack) -> None:
    """Rows both apps held before the bridge: only in F&O, only in Dataverse, equal in both, different in both, one
    Dataverse refuses, and a customer whose group only F&O has."""
    await _customer(s, "IS-F1", OrganizationName="Only in F&O")
    await _account(s, "IS-D1", name="Only in Dataverse")
    await _customer(s, "IS-E1", OrganizationName="Equal")
    await _account(s, "IS-E1", name="Equal")
    await _customer(s, "IS-X1", OrganizationName="F&O's name")
    await _account(s, "IS-X1", name="Dataverse's name")
    await _customer(s, "IS-BAD", DeliveryAddressCity=CITY_TOO_LONG)
    async with s.fno() as fno:
        await fno.create("CustomerGroups", {"dataAreaId": "usmf", "CustomerGroupId": "IS-G"}, {"Description": "New"})
    await _customer(s, "IS-G1", CustomerGroupId="IS-G")


@pytest.fixture(scope="module")
def bridge() -> Iterator[SyncStack]:
    with stack.azurite() as own, sync_stack(own, existing_data) as s:  # its own ledger: runs compare whole tables
        s.storage = own  # type: ignore[attr-defined]
        yield s


async def api(s: SyncStack, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(
            method, f"{s.host}/api/{path}", json=body, headers={"x-functions-key": KEYS["master"]}
        )


async def run_to_end(
    s: SyncStack, mode: str = "sync", path: str = "maps/customers/sync", ends: str = "done"
) -> dict[str, Any]:
    started = await api(s, "POST", path, {"mode": mode} if mode else None)
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == f"/api/sync/{started.json()['run_id']}"
    report = await eventually(lambda: _report(s, started.headers["Location"]),
                              lambda r: r["state"] in ("done", "failed", "held"), 60)  # fmt: skip
    assert report["state"] == ends, report
    return report


async def _report(s: SyncStack, location: str) -> dict[str, Any]:
    response = await api(s, "GET", location.removeprefix("/api/"))
    result: dict[str, Any] = response.json()
    return result


async def app_writes(s: SyncStack) -> tuple[int, int]:
    dv, fno = await s.stats("dataverse"), await s.stats("fno")
    return sum(dv["writes"].values()), sum(fno["writes"].values())


async def test_a_plan_writes_nothing_and_counts_what_a_run_would_do(bridge: SyncStack) -> None:
    before = await app_writes(bridge)
    report = await run_to_end(bridge, "plan")
    assert report["maps"] == ["companies", "currencies", "customer_groups", "customers"]
    customers = report["progress"]["customers"]
    import json

    print(json.dumps(report, indent=1))
    # into Dataverse: IS-F1, IS-BAD, IS-G1 and F&O's seeded customers; into F&O: IS-D1
    created_in_dataverse = customers["dataverse"]["created"]
    assert customers["fno"]["created"] == 1 and created_in_dataverse >= 3
    assert customers["dataverse"]["conflicts"] == 1 and customers["dataverse"]["linked"] == 1
    assert customers["fno"]["read"] >= 5 and customers["dataverse"]["read"] >= 3
    assert report["progress"]["customer_groups"]["dataverse"]["created"] >= 1  # IS-G, and any seeded group
    assert customers["samples"]["conflict"][0]["key"]["CustomerAccount"] == "IS-X1"
    # A plan has no failed rows: rerunning them must not start a writing sync (it did: 202, mode sync).
    rerun = await api(bridge, "POST", f"sync/{report['run_id']}/rerun-failed")
    assert rerun.status_code == 409 and rerun.headers["content-type"].startswith("application/problem+json")
    assert await app_writes(bridge) == before


async def test_a_run_converges_both_apps_as_the_maps_say(bridge: SyncStack) -> None:
    report = await run_to_end(bridge)
    customers = report["progress"]["customers"]
    assert customers["fno"]["created"] == 1 and customers["dataverse"]["errors"] == 1
    assert (await dataverse_account(bridge, "USMF", "IS-F1") or {}).get("name") == "Only in F&O"
    assert (await fno_customer(bridge, "usmf", "IS-D1") or {}).get("OrganizationName") == "Only in Dataverse"
    assert (await dataverse_account(bridge, "USMF", "IS-X1") or {}).get("name") == "F&O's name"  # the master, F&O
    assert (await fno_customer(bridge, "usmf", "IS-X1") or {}).get("OrganizationName") == "F&O's name"
    grouped = await dataverse_account(bridge, "USMF", "IS-G1")
    assert grouped is not None and grouped["_msdyn_customergroupid_value"]  # its group was created first
    assert await dataverse_account(bridge, "USMF", "IS-BAD") is None
    errors = (await api(bridge, "GET", "errors?map=customers")).json()["errors"]
    [bad] = [e for e in errors if e["event"].get("key", {}).get("CustomerAccount") == "IS-BAD"]
    assert "address1_city" in bad["message"] and bad["request"].startswith("PATCH accounts(")
    conflicts = (await api(bridge, "GET", "conflicts?map=customers")).json()["conflicts"]
    assert any(c["key"]["CustomerAccount"] == "IS-X1" and c["winner"] == "fno" for c in conflicts)
    async with TableServiceClient.from_connection_string(bridge.storage.connection_string()) as tables:  # type: ignore[attr-defined]
        ledger = Ledger(tables)
        for number in ("IS-F1", "IS-D1", "IS-E1", "IS-X1", "IS-G1"):
            entry = await ledger.get("customers", {"dataAreaId": "usmf", "CustomerAccount": number})
            assert entry is not None and entry.dataverse.row_id, number  # every pair linked
    await bridge.settle()  # the run's own writes raised notifications: none may come back as a write
    assert (await dataverse_account(bridge, "USMF", "IS-X1") or {}).get("name") == "F&O's name"


async def test_a_second_run_writes_nothing(bridge: SyncStack) -> None:
    before = await app_writes(bridge)
    report = await run_to_end(bridge)
    for name, progress in report["progress"].items():
        for side in ("fno", "dataverse"):
            assert progress[side]["created"] == progress[side]["updated"] == 0, (name, side, progress)
    await bridge.settle()
    assert await app_writes(bridge) == before


async def test_a_run_writes_nothing_into_a_paused_map(bridge: SyncStack) -> None:
    """As live sync holds a paused map's changes (README, "Held?"), so does a run — and says so (review finding 5:
    a reconcile run, and the timer's, wrote the change into Dataverse)."""
    assert (await api(bridge, "POST", "maps/customers/pause?reason=maintenance")).status_code == 200
    try:
        await bridge.delivery("fno", drop_share=1.0)  # not notified: only a run would carry it
        async with bridge.fno() as fno:
            await fno.update("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": "IS-D1"},
                             {"OrganizationName": "Changed while paused"})  # fmt: skip
        await bridge.delivery("fno")
        before = await app_writes(bridge)
        report = await run_to_end(bridge, "reconcile", ends="held")
        message = report["progress"]["customers"]["message"]
        assert message.startswith("the map is paused") and "maintenance" in message, report
        assert await app_writes(bridge) == before
    finally:
        await api(bridge, "POST", "maps/customers/resume")


async def test_rerun_failed_rows_after_fixing_the_cause(bridge: SyncStack) -> None:
    runs = await _runs_with_errors(bridge)
    async with httpx.AsyncClient() as http:  # a customizer lengthens the column
        change = {"entity_set": "accounts", "alter": [{"name": "address1_city", "max_length": 200}]}
        (await http.post(f"{bridge.dataverse_url}/_admin/schema", json=change)).raise_for_status()
    report = await run_to_end(bridge, "", f"sync/{runs}/rerun-failed")
    assert report["only_failed"] and report["progress"]["customers"]["dataverse"]["created"] == 1
    assert (await dataverse_account(bridge, "USMF", "IS-BAD") or {}).get("address1_city") == CITY_TOO_LONG
    errors = (await api(bridge, "GET", "errors?map=customers")).json()["errors"]
    assert not [e for e in errors if e["event"].get("key", {}).get("CustomerAccount") == "IS-BAD"]


async def _runs_with_errors(s: SyncStack) -> str:
    errors = (await api(s, "GET", "errors?map=customers")).json()["errors"]
    run_id = next(e["event"]["run_id"] for e in errors if e["event"].get("key", {}).get("CustomerAccount") == "IS-BAD")
    return str(run_id)


async def test_a_later_live_edit_syncs(bridge: SyncStack) -> None:
    async with bridge.fno() as fno:
        await fno.update("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": "IS-D1"},
                         {"OrganizationName": "Renamed live"})  # fmt: skip
    await eventually(
        lambda: dataverse_account(bridge, "USMF", "IS-D1"), lambda a: (a or {}).get("name") == "Renamed live"
    )


async def test_bad_requests_get_problem_details(bridge: SyncStack) -> None:
    assert (await api(bridge, "POST", "maps/nope/sync", {})).status_code == 404
    bad = await api(bridge, "POST", "maps/customers/sync", {"mode": "everything"})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/problem+json")
    assert (await api(bridge, "GET", "sync/unknown-run")).status_code == 404
    async with httpx.AsyncClient() as http:  # the master key only
        assert (await http.post(f"{bridge.host}/api/maps/customers/sync")).status_code == 401
    await asyncio.sleep(0)


def test_the_terminal_command_plans_with_the_same_code(bridge: SyncStack) -> None:
    storage = bridge.storage.connection_string()  # type: ignore[attr-defined]
    env = {**os.environ, "AzureWebJobsStorage": storage, "DATAVERSE_URL": bridge.dataverse_url,
           "FNO_URL": bridge.fno_url, "LOCAL_BEARER_TOKEN": stack.SIM_TOKEN}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "shared.initialsync", "plan", "customers"], env=env, cwd=ROOT,
                          capture_output=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    customers = report["progress"]["customers"]
    assert report["mode"] == "plan" and customers["state"] == "done"
    assert customers["dataverse"]["created"] == customers["fno"]["created"] == 0  # everything is in sync now
    assert customers["dataverse"]["unchanged"] >= 6 and "customers [" in done.stderr.decode()  # the progress bar
