"""`POST /_admin/schema` customizes a simulator's live schema, as a customizer would the app: added columns are
writable, removed ones are unknown, shortened text columns refuse longer values — in both simulators."""

from __future__ import annotations

from tests.integration.sims.conftest import Sim


async def test_dataverse_add_remove_alter_change_what_writes_accept(dv: Sim) -> None:
    created = await dv.http.post("accounts", json={"accountnumber": "S-1", "fax": "555", "name": "Long enough name"})
    assert created.status_code == 204, created.text
    url = created.headers["OData-EntityId"].rsplit("/", 1)[1]

    change = {
        "entity_set": "accounts",
        "add": [{"name": "new_rating", "type": "text", "max_length": 50}],
        "remove": ["fax"],
        "alter": [{"name": "name", "max_length": 10}],
    }
    r = await dv.admin.post("/_admin/schema", json=change)
    assert r.status_code == 200, r.text
    columns = {c["name"]: c for c in r.json()["columns"]}
    assert columns["new_rating"] == {"name": "new_rating", "type": "text", "max_length": 50}
    assert "fax" not in columns and columns["name"]["max_length"] == 10

    added = await dv.http.patch(url, json={"new_rating": "AAA"})
    assert added.status_code == 204, added.text
    removed = await dv.http.patch(url, json={"fax": "556"})
    assert removed.status_code == 400
    assert removed.json()["error"]["code"] == "0x80060888"
    assert "Could not find a property named 'fax'" in removed.json()["error"]["message"]

    too_long = await dv.http.patch(url, json={"name": "Eleven char"})
    assert too_long.status_code == 400
    assert too_long.json()["error"] == {
        "code": "0x80044331",
        "message": "A validation error occurred. The length of the 'name' attribute of the 'account' entity "
        "exceeded the maximum allowed length of '10'.",
    }
    assert (await dv.http.patch(url, json={"name": "Ten chars!"})).status_code == 204
    assert (await dv.http.post("accounts", json={"name": "x" * 11})).status_code == 400


async def test_bad_customizations_are_refused_whole(dv: Sim) -> None:
    bad = [
        ({"entity_set": "nosuch"}, 404),
        ({"entity_set": "accounts", "remove": ["nosuchcolumn"]}, 400),
        ({"entity_set": "accounts", "remove": ["accountnumber"]}, 400),  # part of the alternate key
        ({"entity_set": "accounts", "add": [{"name": "name"}]}, 400),  # exists already
        ({"entity_set": "accounts", "add": [{"name": "x", "type": "blob"}]}, 400),
        ({"entity_set": "accounts", "alter": [{"name": "name", "max_length": 0}]}, 400),
        ({"entity_set": "accounts", "add": [{"name": "y"}], "remove": ["nosuchcolumn"]}, 400),
    ]
    for body, status in bad:
        r = await dv.admin.post("/_admin/schema", json=body)
        assert r.status_code == status, (body, r.text)
    columns = {c["name"] for c in (await dv.admin.get("/_admin/schema/accounts")).json()["columns"]}
    assert "y" not in columns and "fax" in columns  # the half-valid request changed nothing


async def test_fno_schema_is_customizable_too(fo: Sim) -> None:
    key = "CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')"
    r = await fo.admin.post(
        "/_admin/schema",
        json={
            "entity_set": "CustomersV3",
            "add": [{"name": "NewField", "type": "text"}],
            "remove": ["PrimaryContactFax"],
            "alter": [{"name": "OrganizationName", "max_length": 5}],
        },
    )
    assert r.status_code == 200, r.text
    assert (await fo.http.patch(key, params={"cross-company": "true"}, json={"NewField": "v"})).status_code == 204
    removed = await fo.http.patch(key, params={"cross-company": "true"}, json={"PrimaryContactFax": "1"})
    assert removed.status_code == 400
    too_long = await fo.http.patch(key, params={"cross-company": "true"}, json={"OrganizationName": "Contoso"})
    assert too_long.status_code == 400 and "OrganizationName" in too_long.text
