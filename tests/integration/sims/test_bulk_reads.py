"""What sync runs need from the simulators, as the apps do it: pages (Dataverse ≤ 5,000, F&O ≤ 10,000),
Dataverse change tracking with delta links and `$deletedEntity`, F&O `$batch`, lost notifications on demand —
Microsoft Learn, "Page results", "Use change tracking to synchronize data with external systems"."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from local.sims.delivery import Notification
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.http import ODataTransport
from shared.initialsync.io import BYPASS_HEADER, own_steps
from shared.maps.loader import load_maps
from shared.registration.dataverse import register
from shared.registration.plan import dataverse_plan
from tests.integration.sims.conftest import Sim
from tests.integration.sims.test_query_fidelity import _accounts, _company

TRACK = {"Prefer": "odata.track-changes,odata.maxpagesize=2"}


async def _all_pages(sim: Sim, first: str, params: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], str]:
    rows: list[dict[str, Any]] = []
    r = await sim.http.get(first, params=params, headers=TRACK)
    while True:
        assert r.status_code == 200, r.text
        assert r.headers["Preference-Applied"] == "odata.track-changes"
        body = r.json()
        rows += body["value"]
        if "@odata.nextLink" not in body:
            return rows, str(body["@odata.deltaLink"])
        r = await sim.http.get(body["@odata.nextLink"], headers=TRACK)


async def test_change_tracking_answers_what_changed_since_the_delta_link(dv: Sim) -> None:
    company = await _accounts(dv, "CT", [("1", "One", 1), ("2", "Two", 2), ("3", "Three", 3)])
    first, delta = await _all_pages(dv, "accounts", {"$select": "name,accountnumber"})
    assert {"CT1", "CT2", "CT3"} <= {r["accountnumber"] for r in first} and "$deltatoken=" in unquote(delta)
    assert set(first[0]) >= {"name", "accountnumber", "accountid", "@odata.etag"}
    nothing, same = await _all_pages(dv, delta)
    assert nothing == []
    await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='CT2')", json={"name": "Two!"})
    gone = next(r["accountid"] for r in first if r["accountnumber"] == "CT3")
    assert (await dv.http.delete(f"accounts({gone})")).status_code == 204
    await _accounts(dv, "CT", [("4", "Four", 4)])
    changed, later = await _all_pages(dv, same)
    assert sorted(r["accountnumber"] for r in changed if "accountnumber" in r) == ["CT2", "CT4"]
    [deleted] = [r for r in changed if r.get("reason") == "deleted"]
    assert deleted["id"] == gone and deleted["@odata.context"].endswith("accounts/$deletedEntity")
    assert (await _all_pages(dv, later))[0] == []


async def test_change_tracking_refuses_filter_orderby_and_top(dv: Sim) -> None:
    for option in ({"$filter": "name eq 'x'"}, {"$orderby": "name"}, {"$top": "1"}):
        r = await dv.http.get("accounts", params=option, headers=TRACK)
        assert r.status_code == 400 and "change tracking" in r.json()["error"]["message"]
    r = await dv.http.get("accounts", params={"$deltatoken": "nonsense"}, headers=TRACK)
    assert r.status_code == 400


async def test_fno_pages_hold_up_to_ten_thousand_rows_dataverse_five(fo: Sim, dv: Sim) -> None:
    big = {"Prefer": "odata.maxpagesize=20000"}
    r = await fo.http.get("CustomersV3", params={"cross-company": "true"}, headers={"Prefer": "odata.maxpagesize=1"})
    assert len(r.json()["value"]) == 1 and "$skiptoken=1" in unquote(r.json()["@odata.nextLink"])
    assert "Preference-Applied" not in (await fo.http.get("CustomersV3", headers=big)).headers
    assert "Preference-Applied" not in (await dv.http.get("accounts", headers=big)).headers


async def test_a_share_of_notifications_can_be_lost(dv: Sim) -> None:
    bad = await dv.admin.post("/_admin/delivery", json={"drop_share": 1.5})
    assert bad.status_code == 400
    assert (await dv.admin.post("/_admin/delivery", json={"drop_share": 1.0})).status_code == 200
    deliverer = dv.simulator.dialect.deliverer
    for i in range(5):
        deliverer.submit(Notification(f"row-{i}", "http://127.0.0.1:9/none", {}, b"{}"))
    stats = (await dv.admin.get("/_admin/stats")).json()["webhooks"]
    assert stats["dropped"] == 5 and stats["pending"] == 0


async def _submitted(sim: Sim) -> int:
    stats = (await sim.admin.get("/_admin/stats")).json()["webhooks"]
    return int(stats["sent"]) + int(stats["failed"]) + int(stats["pending"])


async def test_a_write_can_skip_the_bridges_own_webhook_steps(dv: Sim) -> None:
    """Microsoft Learn, "Bypass custom Dataverse logic": `MSCRM.BypassBusinessLogicExecutionStepIds` names the
    steps a write skips (the bridge's own, found by its endpoint), `MSCRM.BypassBusinessLogicExecution: CustomAsync`
    every asynchronous one; a write without either raises its webhook."""
    client = DataverseClient(ODataTransport(f"{dv.url}{dv.simulator.dialect.root}", StaticToken("t")))
    try:
        await register(client, dataverse_plan(load_maps(), "http://127.0.0.1:9/api/webhooks/dataverse"), "k")
        steps = await own_steps(client, "account")
        assert client.transport.dop_hint == 4  # Dataverse's recommended parallelism, on every answer
        assert len(steps) == 3 and await own_steps(client, "nosuchtable") == []  # Create, Update, Delete
    finally:
        await client.close()
    company = await _company(dv)
    body = {"name": "Quiet", "customertypecode": 3}
    before = await _submitted(dv)
    for number, headers in (("BY1", {BYPASS_HEADER: ",".join(steps)}),
                            ("BY2", {"MSCRM.BypassBusinessLogicExecution": "CustomAsync"})):  # fmt: skip
        r = await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='{number}')", json=body,
                                headers=headers)  # fmt: skip
        assert r.status_code == 204, r.text
    assert await _submitted(dv) == before
    await _accounts(dv, "BY", [("3", "Heard", 1)])
    assert await _submitted(dv) == before + 1
