"""Alternate keys and lookups in the URL forms Microsoft documents, and the simulator as strict as Dataverse about
them. Microsoft Learn, "Use an alternate key to reference a record": a lookup column inside an alternate key is
named by its lookup property `_<navigation property>_value`, also inside an `@odata.bind` target."""

from __future__ import annotations

from tests.integration.sims.conftest import Sim


async def _company(sim: Sim, code: str = "USMF") -> str:
    r = await sim.http.get("cdm_companies", params={"$filter": f"cdm_companycode eq '{code}'"})
    return str(r.json()["value"][0]["cdm_companyid"])


async def test_a_lookup_in_an_alternate_key_is_named_by_its_lookup_property(dv: Sim) -> None:
    company = await _company(dv)
    documented = f"accounts(_msdyn_company_value={company},accountnumber='K-1')"
    assert (await dv.http.patch(documented, json={"name": "Keyed"})).status_code == 204
    row = (await dv.http.get(documented)).json()
    assert row["name"] == "Keyed" and row["_msdyn_company_value"] == company and "msdyn_company" not in row

    wrong = await dv.http.get(f"accounts(msdyn_company={company},accountnumber='K-1')")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "0x80060888"
    assert wrong.json()["error"]["message"].startswith(
        "The key in the request URI is not valid for resource 'Microsoft.Dynamics.CRM.account'."
    )
    assert (await dv.http.patch(f"accounts(msdyn_company={company},accountnumber='K-2')", json={})).status_code == 400
    partial = await dv.http.get("accounts(accountnumber='K-1')")  # not every part of the key
    assert partial.status_code == 400
    quoted = await dv.http.get(f"accounts(_msdyn_company_value='{company}',accountnumber='K-1')")
    assert quoted.status_code == 400  # a lookup's value is an Edm.Guid literal, not text


async def test_the_primary_key_may_be_named(dv: Sim) -> None:
    company = await _company(dv)
    r = await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='K-3')", json={"name": "n"})
    row_id = r.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert (await dv.http.get(f"accounts(accountid={row_id})")).json()["accountnumber"] == "K-3"


async def test_a_bind_target_names_its_lookup_key_the_same_way(dv: Sim) -> None:
    company = await _company(dv)
    group = f"/msdyn_customergroups(_msdyn_company_value={company},msdyn_groupid='10')"
    r = await dv.http.patch(
        f"accounts(_msdyn_company_value={company},accountnumber='K-4')",
        json={"name": "Bound", "msdyn_customergroupid@odata.bind": group},
    )
    assert r.status_code == 204, r.text
    wrong = await dv.http.patch(
        f"accounts(_msdyn_company_value={company},accountnumber='K-5')",
        json={"msdyn_customergroupid@odata.bind": f"/msdyn_customergroups(msdyn_company={company},msdyn_groupid='10')"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "0x80060888"


async def test_filter_on_a_lookup_uses_its_lookup_property(dv: Sim) -> None:
    usmf, usrt = await _company(dv), await _company(dv, "USRT")
    r = await dv.http.get("msdyn_customergroups", params={"$filter": f"_msdyn_company_value eq {usrt}"})
    assert r.status_code == 200
    assert [g["msdyn_description"] for g in r.json()["value"]] == ["Store customers"]
    assert all(g["_msdyn_company_value"] != usmf for g in r.json()["value"])
    wrong = await dv.http.get("msdyn_customergroups", params={"$filter": f"msdyn_company eq {usrt}"})
    assert wrong.status_code == 400


async def test_a_customer_lookup_is_bound_through_its_per_table_navigation_property(dv: Sim) -> None:
    company = await _company(dv)
    await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='K-6')", json={"name": "Buyer"})
    buyer = f"/accounts(_msdyn_company_value={company},accountnumber='K-6')"
    order = f"salesorders(_msdyn_company_value={company},msdyn_salesordernumber='SO-K6')"
    wrong = await dv.http.patch(order, json={"customerid@odata.bind": buyer})
    assert wrong.status_code == 400 and "undeclared property 'customerid'" in wrong.json()["error"]["message"]
    right = await dv.http.patch(order, json={"customerid_account@odata.bind": buyer})
    assert right.status_code == 204, right.text
    assert (await dv.http.get(order)).json()["_customerid_value"]


async def test_a_bind_to_a_row_deleted_since_it_was_last_bound_is_refused(dv: Sim) -> None:
    """The simulator remembers bind targets for bulk writes: never past a write to the target's table."""
    company = await _company(dv)
    group = f"msdyn_customergroups(_msdyn_company_value={company},msdyn_groupid='KB')"
    assert (await dv.http.patch(group, json={"msdyn_description": "Bound then gone"})).status_code == 204
    for n in (1, 2):  # bound twice: the second answered from what the first found
        r = await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='KB-{n}')",
                                json={"name": "Bound", "msdyn_customergroupid@odata.bind": f"/{group}"})  # fmt: skip
        assert r.status_code == 204, r.text
    assert (await dv.http.delete(group)).status_code == 204
    gone = await dv.http.patch(f"accounts(_msdyn_company_value={company},accountnumber='KB-3')",
                               json={"name": "Bound", "msdyn_customergroupid@odata.bind": f"/{group}"})  # fmt: skip
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "0x80040217"
