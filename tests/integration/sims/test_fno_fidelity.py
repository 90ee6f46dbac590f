"""The F&O simulator as strict as F&O: `$metadata` is the CSDL of every served entity, an enum field refuses a
symbol its enum does not define (Infolog 400), and data events carry enums as real virtual tables do — an
OptionSetValue numbered from 200,000,000 — never as symbols (../shared/reference/fno.md); the Dataverse simulator's
virtual-table definitions turn them back into symbols (test_virtual_table_metadata.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

from tests.integration.sims.conftest import Sim
from tests.integration.sims.events import data_event

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NS = "Microsoft.Dynamics.DataEntities"


async def test_metadata_is_the_csdl_of_every_served_entity(fo: Sim) -> None:
    response = await fo.http.get("$metadata")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    schema = ElementTree.fromstring(response.content).find(f".//{EDM}Schema")
    assert schema is not None and schema.get("Namespace") == NS
    sets = {s.get("Name"): s.get("EntityType") for s in schema.iter(f"{EDM}EntitySet")}
    assert sets["CustomersV3"] == f"{NS}.CustomerV3" and set(sets) == set(fo.simulator.tables)
    customer = next(t for t in schema.iter(f"{EDM}EntityType") if t.get("Name") == "CustomerV3")
    assert [r.get("Name") for r in customer.iter(f"{EDM}PropertyRef")] == ["dataAreaId", "CustomerAccount"]
    props = {p.get("Name"): p.attrib for p in customer.iter(f"{EDM}Property")}
    assert props["CustomerAccount"]["Type"] == "Edm.String" and props["CustomerAccount"]["MaxLength"] == "20"
    assert props["OrganizationName"]["MaxLength"] == "100"
    assert props["CreditLimit"] | {} == {"Name": "CreditLimit", "Type": "Edm.Decimal", "Precision": "32", "Scale": "6"}
    assert props["OrganizationNumberOfEmployees"]["Type"] == "Edm.Int32"
    assert props["CreditLimitIsMandatory"]["Type"] == f"{NS}.NoYes"
    assert props["PartyType"]["Type"] == f"{NS}.DirPartyBaseType"
    enums = {e.get("Name"): [m.get("Name") for m in e.iter(f"{EDM}Member")] for e in schema.iter(f"{EDM}EnumType")}
    assert enums["NoYes"] == ["No", "Yes"] and "Organization" in enums["DirPartyBaseType"]
    assert (await fo.http.get("$metadata", headers={"Authorization": "Bearer wrong"})).status_code == 401


async def test_metadata_follows_a_customized_schema(fo: Sim) -> None:
    change = {"entity_set": "CustomersV3", "remove": ["TaxExemptNumber"], "alter": [{"name": "CustomerAccount",
              "max_length": 10}], "add": [{"name": "xyz_Region", "type": "text", "max_length": 30}]}  # fmt: skip
    assert (await fo.admin.post("/_admin/schema", json=change)).status_code == 200
    schema = ElementTree.fromstring((await fo.http.get("$metadata")).content)
    customer = next(t for t in schema.iter(f"{EDM}EntityType") if t.get("Name") == "CustomerV3")
    props = {p.get("Name"): p.attrib for p in customer.iter(f"{EDM}Property")}
    assert "TaxExemptNumber" not in props and props["CustomerAccount"]["MaxLength"] == "10"
    assert props["xyz_Region"]["MaxLength"] == "30"


async def test_an_undefined_enum_symbol_is_refused_with_an_infolog(fo: Sim) -> None:
    row = {"dataAreaId": "usmf", "CustomerAccount": "E-1", "PartyType": "Organization", "CreditLimitIsMandatory": "Y"}
    response = await fo.http.post("CustomersV3", json=row)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "An error has occurred."
    assert (
        "Infolog" in error["innererror"]["message"]
        and "'Y' is not defined for the enum NoYes" in (error["innererror"]["message"])
    )
    assert (await fo.http.post("CustomersV3", json=row | {"CreditLimitIsMandatory": "Yes"})).status_code == 201
    patch = await fo.http.patch("CustomersV3(dataAreaId='usmf',CustomerAccount='E-1')", json={"PartyType": 2})
    assert patch.status_code == 400 and "DirPartyBaseType" in patch.json()["error"]["innererror"]["message"]


async def test_a_number_field_refuses_text(fo: Sim) -> None:
    row = {"dataAreaId": "usmf", "CustomerAccount": "N-1", "PartyType": "Organization"}
    for field, value, edm in (
        ("OrganizationNumberOfEmployees", "many", "Edm.Int32"),
        ("CreditLimit", "x", "Edm.Decimal"),
    ):
        response = await fo.http.post("CustomersV3", json=row | {field: value})
        assert response.status_code == 400
        assert f"expected type '{edm}'" in response.json()["error"]["innererror"]["message"]
    created = await fo.http.post("CustomersV3", json=row | {"OrganizationNumberOfEmployees": 12, "CreditLimit": 99.5})
    assert created.status_code == 201


async def test_data_events_carry_enums_as_option_set_values(fo: Sim) -> None:
    row = {"dataAreaId": "usmf", "CustomerAccount": "E-2", "PartyType": "Organization",
           "CreditLimitIsMandatory": "Yes", "IsOneTimeCustomer": "No", "OrganizationName": "Enums"}  # fmt: skip
    received = [json.loads(await data_event(fo, row))]  # the endpoint POST /_admin/data-events sets
    (context,) = received
    assert context["MessageName"] == "OnExternalCreated"
    target = context["InputParameters"][0]["value"]
    fields = {a["key"]: a["value"] for a in target["Attributes"]}
    option = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts"
    assert fields["mserp_creditlimitismandatory"] == {"__type": option, "Value": 200000001}  # NoYes::Yes
    assert fields["mserp_isonetimecustomer"] == {"__type": option, "Value": 200000000}  # NoYes::No
    assert fields["mserp_partytype"] == {"__type": option, "Value": 200000002}  # DirPartyBaseType::Organization
    assert fields["mserp_organizationname"] == "Enums" and fields["mserp_customeraccount"] == "E-2"


async def test_an_etag_names_the_rows_recversion_and_recid_as_f_and_o_does(fo: Sim) -> None:
    """`W/"<base64 of '<RecVersion>,<RecId>'>"` (../shared/reference/fno.md's sample decodes to '1,68719482833'): the
    RecId stays, RecVersion is 1 on insert and random after an update — it does not grow, so the bridge must not
    read an order into it (tests/unit/connectors/test_fno_etags.py)."""
    import base64

    def decoded(etag: str) -> tuple[int, int]:
        version, rec_id = base64.b64decode(etag.removeprefix("W/").strip('"')).decode().strip("'").split(",")
        return int(version), int(rec_id)

    row = {"dataAreaId": "usmf", "CustomerAccount": "ET-1", "PartyType": "Organization"}
    created = await fo.http.post("CustomersV3", json=row)
    assert created.status_code == 201
    first, rec_id = decoded(created.headers["etag"])
    assert first == 1 and rec_id > 0
    url = "CustomersV3(dataAreaId='usmf',CustomerAccount='ET-1')"
    versions = []
    for n in range(3):
        patched = await fo.http.patch(url, json={"OrganizationName": f"v{n}"})
        assert patched.status_code == 204
        version, same = decoded(patched.headers["etag"])
        assert same == rec_id and version != 1
        versions.append(version)
    assert len(set(versions)) == 3  # a new RecVersion per update
    assert decoded((await fo.http.get(url)).json()["@odata.etag"]) == (versions[-1], rec_id)
