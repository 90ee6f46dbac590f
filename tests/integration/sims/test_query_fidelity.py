"""Reads and writes answer as the apps do: strict names, the primary key with every `$select`, `$orderby`,
`$count`, `$top`, conditional GETs, `@odata.context`, `Preference-Applied`, annotations, change-set references, the
412 error code and `OData-EntityId` at the caller's host. Microsoft Learn: "Query data using the Web API", "Page
results", "Select columns" (formatted values, lookup property data), "Perform conditional operations using the Web
API", "Execute batch operations using the Web API"."""

from __future__ import annotations

import uuid

from tests.integration.sims.conftest import Sim


async def _company(sim: Sim, code: str = "USMF") -> str:
    r = await sim.http.get("cdm_companies", params={"$filter": f"cdm_companycode eq '{code}'"})
    return str(r.json()["value"][0]["cdm_companyid"])


async def _accounts(sim: Sim, prefix: str, rows: list[tuple[str, str, int]]) -> str:
    company = await _company(sim)
    for number, name, employees in rows:
        r = await sim.http.patch(
            f"accounts(_msdyn_company_value={company},accountnumber='{prefix}{number}')",
            json={"name": name, "numberofemployees": employees, "customertypecode": 3},
        )
        assert r.status_code == 204, r.text
    return company


async def test_unknown_names_in_select_filter_and_orderby_are_refused(dv: Sim) -> None:
    for params in ({"$select": "nosuchcolumn"}, {"$filter": "nosuchcolumn eq 'x'"}, {"$orderby": "nosuchcolumn"},
                   {"$select": "name,nosuchcolumn"}, {"$filter": "name eq 'x' or (nosuchcolumn eq 1)"}):  # fmt: skip
        r = await dv.http.get("accounts", params=params)
        assert r.status_code == 400, params
        assert r.json()["error"] == {
            "code": "0x80060888",
            "message": "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.account'.",
        }
    company = await _accounts(dv, "SEL-", [("1", "Selected", 1)])
    one = await dv.http.get(
        f"accounts(_msdyn_company_value={company},accountnumber='SEL-1')", params={"$select": "nosuchcolumn"}
    )
    assert one.status_code == 400
    assert (await dv.http.get("accounts", params={"$skip": "1"})).status_code == 400  # "Page results"


async def test_select_always_returns_the_primary_key(dv: Sim) -> None:
    company = await _accounts(dv, "PK-", [("1", "Keyed", 1)])
    row = (await dv.http.get(f"accounts(_msdyn_company_value={company},accountnumber='PK-1')",
                             params={"$select": "name"})).json()  # fmt: skip
    assert set(row) == {"@odata.context", "@odata.etag", "name", "accountid"}
    assert row["@odata.context"].endswith("$metadata#accounts(name,accountid)/$entity")


async def test_orderby_count_top_and_context(dv: Sim) -> None:
    prefix = f"O{uuid.uuid4().hex[:4]}-"
    await _accounts(dv, prefix, [("1", "Beta", 10), ("2", "alpha", 30), ("3", "Beta", 20), ("4", "Gamma", 5)])
    flt = f"startswith(accountnumber,'{prefix}')"
    order = "name asc,numberofemployees desc"
    params = {"$filter": flt, "$select": "name,numberofemployees", "$orderby": order, "$count": "true"}
    r = await dv.http.get("accounts", params=params)
    body = r.json()
    assert [(d["name"], d["numberofemployees"]) for d in body["value"]] == [
        ("alpha", 30), ("Beta", 20), ("Beta", 10), ("Gamma", 5)
    ]  # fmt: skip
    assert body["@odata.count"] == 4
    assert body["@odata.context"].endswith("$metadata#accounts(name,numberofemployees,accountid)")
    top = await dv.http.get("accounts", params={"$filter": flt, "$orderby": "numberofemployees desc", "$top": "2"})
    assert [d["numberofemployees"] for d in top.json()["value"]] == [30, 20]


async def test_paging_answers_preference_applied_and_a_next_link(dv: Sim) -> None:
    prefix = f"P{uuid.uuid4().hex[:4]}-"
    await _accounts(dv, prefix, [(str(i), f"Paged {i}", i) for i in range(3)])
    flt = f"startswith(accountnumber,'{prefix}')"
    r = await dv.http.get("accounts", params={"$filter": flt}, headers={"Prefer": "odata.maxpagesize=2"})
    assert r.headers["Preference-Applied"] == "odata.maxpagesize=2"
    assert len(r.json()["value"]) == 2 and r.json()["@odata.nextLink"].startswith(dv.url)
    rest = await dv.http.get(r.json()["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=2"})
    assert len(rest.json()["value"]) == 1 and "@odata.nextLink" not in rest.json()


async def test_if_none_match_with_the_current_etag_answers_304(dv: Sim) -> None:
    company = await _accounts(dv, "NM-", [("1", "Cached", 1)])
    url = f"accounts(_msdyn_company_value={company},accountnumber='NM-1')"
    first = await dv.http.get(url)
    etag = first.json()["@odata.etag"]
    assert first.headers["ETag"] == etag
    unchanged = await dv.http.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    await dv.http.patch(url, json={"name": "Changed"})
    changed = await dv.http.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["name"] == "Changed"


async def test_annotations_on_lookups_and_choices(dv: Sim) -> None:
    company = await _accounts(dv, "AN-", [("1", "Annotated", 1)])
    url = f"accounts(_msdyn_company_value={company},accountnumber='AN-1')"
    plain = (await dv.http.get(url)).json()
    assert not any("@OData.Community" in k or "@Microsoft.Dynamics" in k for k in plain)
    r = await dv.http.get(url, headers={"Prefer": 'odata.include-annotations="*"'})
    assert r.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    row = r.json()
    assert row["_msdyn_company_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "cdm_company"
    assert row["_msdyn_company_value@OData.Community.Display.V1.FormattedValue"] == "Contoso Entertainment System USA"
    assert row["customertypecode@OData.Community.Display.V1.FormattedValue"] == "Customer"
    only = await dv.http.get(
        url, headers={"Prefer": 'odata.include-annotations="OData.Community.Display.V1.FormattedValue"'}
    )
    assert "customertypecode@OData.Community.Display.V1.FormattedValue" in only.json()
    assert "_msdyn_company_value@Microsoft.Dynamics.CRM.lookuplogicalname" not in only.json()


async def test_writes_name_the_callers_host_and_say_what_they_applied(dv: Sim) -> None:
    company = await _company(dv)
    r = await dv.http.patch(
        f"accounts(_msdyn_company_value={company},accountnumber='EH-1')",
        json={"name": "Here"},
        headers={"Prefer": "return=representation"},
    )
    assert r.status_code == 201 and r.headers["Preference-Applied"] == "return=representation"
    assert r.headers["OData-EntityId"].startswith(f"{dv.url}/api/data/v9.2/accounts(")
    assert r.json()["@odata.context"].endswith("$metadata#accounts/$entity")
    plain = await dv.http.post("accounts", json={"name": "There", "accountnumber": "EH-2"})
    assert plain.headers["OData-EntityId"].startswith(f"{dv.url}/api/data/v9.2/accounts(")


async def test_a_stale_etag_answers_412_with_its_error_code(dv: Sim) -> None:
    company = await _accounts(dv, "ST-", [("1", "Stale", 1)])
    url = f"accounts(_msdyn_company_value={company},accountnumber='ST-1')"
    r = await dv.http.patch(url, json={"name": "x"}, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412
    # "Web service error codes": ConcurrencyVersionMismatch (see the sample dataverse-error-412-etag-mismatch.json)
    assert r.json()["error"] == {
        "code": "0x80060882",
        "message": "The version of the existing record doesn't match the RowVersion property provided.",
    }


async def test_a_change_set_resolves_references_to_earlier_requests(dv: Sim) -> None:
    company = await _company(dv)
    root = f"{dv.url}/api/data/v9.2/"
    number = f"CS-{uuid.uuid4().hex[:6]}"

    def part(content_id: int, method: str, url: str, body: str) -> str:
        return (
            "--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {content_id}\r\n\r\n{method} {url} HTTP/1.1\r\n"
            f"Content-Type: application/json\r\n\r\n{body}\r\n"
        )

    body = (
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n"
        + part(1, "POST", f"{root}msdyn_customergroups",
               f'{{"msdyn_groupid": "{number}", "msdyn_company@odata.bind": "/cdm_companies({company})"}}')
        + part(2, "POST", f"{root}accounts",
               f'{{"name": "Ref", "accountnumber": "{number}", "msdyn_customergroupid@odata.bind": "$1"}}')
        + part(3, "PATCH", "$2", '{"name": "Ref, renamed"}')
        + "--changeset_1--\r\n--batch_1--\r\n"
    )  # fmt: skip
    r = await dv.http.post("$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=batch_1"})
    assert r.status_code == 200 and "HTTP/1.1 4" not in r.text, r.text
    [row] = (await dv.http.get("accounts", params={"$filter": f"accountnumber eq '{number}'"})).json()["value"]
    assert row["name"] == "Ref, renamed" and row["_msdyn_customergroupid_value"]


async def test_fno_is_strict_about_names_too(fo: Sim) -> None:
    for params in ({"$select": "NoSuchField"}, {"$filter": "NoSuchField eq 'x'"}, {"$orderby": "NoSuchField"}):
        r = await fo.http.get("CustomersV3", params={"cross-company": "true", **params})
        assert r.status_code == 400, params
        assert "Could not find a property named 'NoSuchField'" in r.text  # in F&O's own error body
    ordered = await fo.http.get(
        "CustomersV3",
        params={"cross-company": "true", "$orderby": "CustomerAccount desc", "$select": "CustomerAccount"},
    )
    accounts = [c["CustomerAccount"] for c in ordered.json()["value"]]
    assert accounts == sorted(accounts, reverse=True) and len(accounts) >= 2
    assert ordered.json()["@odata.context"].endswith("$metadata#CustomersV3(CustomerAccount)")
