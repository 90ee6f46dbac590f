"""The Dataverse simulator publishes its tables as Dataverse does, derived from the maps, the documented overlay and
any customization: Microsoft Learn, "Query table definitions using the Web API" (EntityDefinitions, Attributes,
Keys, attribute casts with OptionSet), "WhoAmI Function" and the CSDL `$metadata` document."""

from __future__ import annotations

from xml.etree import ElementTree

from tests.integration.sims.conftest import Sim

CRM = "Microsoft.Dynamics.CRM"


async def test_entity_definition_with_attributes_and_keys(dv: Sim) -> None:
    r = await dv.http.get(
        "EntityDefinitions(LogicalName='account')",
        params={
            "$select": "LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,LogicalCollectionName",
            "$expand": "Attributes,Keys",
        },
    )
    assert r.status_code == 200, r.text
    account = r.json()
    assert account["@odata.context"].endswith("$metadata#EntityDefinitions/$entity")
    assert {k: account[k] for k in ("LogicalName", "EntitySetName", "PrimaryIdAttribute", "PrimaryNameAttribute")} == {
        "LogicalName": "account",
        "EntitySetName": "accounts",
        "PrimaryIdAttribute": "accountid",
        "PrimaryNameAttribute": "name",
    }
    assert account["LogicalCollectionName"] == "accounts" and account["MetadataId"]
    attributes = {a["LogicalName"]: a for a in account["Attributes"]}
    name = attributes["name"]
    assert name["@odata.type"] == f"#{CRM}.StringAttributeMetadata"
    assert (name["AttributeType"], name["MaxLength"], name["IsPrimaryName"]) == ("String", 160, True)
    assert attributes["accountnumber"]["MaxLength"] == 20  # the documented length, from the overlay
    assert attributes["accountid"]["IsPrimaryId"] is True
    assert attributes["accountid"]["AttributeType"] == "Uniqueidentifier"
    company = attributes["msdyn_company"]
    assert company["@odata.type"] == f"#{CRM}.LookupAttributeMetadata" and company["Targets"] == ["cdm_company"]
    assert attributes["msdyn_customergroupid"]["Targets"] == ["msdyn_customergroup"]
    assert attributes["customertypecode"]["@odata.type"] == f"#{CRM}.PicklistAttributeMetadata"
    assert attributes["creditlimit"]["AttributeType"] == "Decimal"
    assert attributes["description"]["@odata.type"] == f"#{CRM}.MemoAttributeMetadata"
    [key] = account["Keys"]
    assert key["KeyAttributes"] == ["msdyn_company", "accountnumber"]
    assert key["EntityKeyIndexStatus"] == "Active" and key["LogicalName"] and key["SchemaName"]


async def test_entity_definitions_filtered_by_logical_name_or_entity_set(dv: Sim) -> None:
    for query in (
        "LogicalName eq 'account'",
        "EntitySetName eq 'accounts'",
        "IsPrivate eq false and (LogicalName eq 'account')",
    ):
        r = await dv.http.get(
            "EntityDefinitions", params={"$select": "LogicalName,EntitySetName,PrimaryIdAttribute", "$filter": query}
        )
        assert r.status_code == 200, r.text
        [only] = r.json()["value"]
        assert only["EntitySetName"] == "accounts" and only["PrimaryIdAttribute"] == "accountid"
    none = await dv.http.get("EntityDefinitions", params={"$filter": "LogicalName eq 'nosuch'"})
    assert none.json()["value"] == []
    bad = await dv.http.get("EntityDefinitions", params={"$select": "NoSuchProperty"})
    assert bad.status_code == 400


async def test_attributes_keys_and_a_picklist_cast_with_its_options(dv: Sim) -> None:
    r = await dv.http.get("EntityDefinitions(LogicalName='account')/Attributes")
    assert r.status_code == 200 and {"name", "accountnumber"} <= {a["LogicalName"] for a in r.json()["value"]}
    keys = (await dv.http.get("EntityDefinitions(LogicalName='account')/Keys")).json()["value"]
    assert keys[0]["KeyAttributes"] == ["msdyn_company", "accountnumber"]

    r = await dv.http.get(
        f"EntityDefinitions(LogicalName='account')/Attributes/{CRM}.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet"},
    )
    assert r.status_code == 200, r.text
    picklists = {a["LogicalName"]: a for a in r.json()["value"]}
    assert "name" not in picklists and "customertypecode" in picklists
    options = {
        o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"]
        for o in picklists["customertypecode"]["OptionSet"]["Options"]
    }
    assert options[3] == "Customer" and options[1] == "Competitor"
    order = (
        await dv.http.get(
            f"EntityDefinitions(LogicalName='salesorder')/Attributes/{CRM}.PicklistAttributeMetadata",
            params={"$expand": "OptionSet($select=Options)"},
        )
    ).json()
    status = {a["LogicalName"]: a for a in order["value"]}["msdyn_processingstatus"]["OptionSet"]["Options"]
    assert {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in status}[
        192350005
    ] == "Invoiced"  # from the map


async def test_metadata_follows_a_customization(dv: Sim) -> None:
    change = {"entity_set": "accounts", "add": [{"name": "new_rating", "type": "text", "max_length": 50}],
              "remove": ["fax"], "alter": [{"name": "name", "max_length": 20}]}  # fmt: skip
    assert (await dv.admin.post("/_admin/schema", json=change)).status_code == 200
    account = (await dv.http.get("EntityDefinitions(LogicalName='account')", params={"$expand": "Attributes"})).json()
    attributes = {a["LogicalName"]: a for a in account["Attributes"]}
    assert attributes["new_rating"]["MaxLength"] == 50 and "fax" not in attributes
    assert attributes["name"]["MaxLength"] == 20
    csdl = (await dv.http.get("$metadata")).text
    assert 'Name="new_rating"' in csdl and 'Name="fax"' not in csdl


async def test_csdl_metadata_and_whoami(dv: Sim) -> None:
    r = await dv.http.get("$metadata")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    ns = {"edm": "http://docs.oasis-open.org/odata/ns/edm"}
    root = ElementTree.fromstring(r.content)
    account = root.find(".//edm:EntityType[@Name='account']", ns)
    assert account is not None
    assert account.find("edm:Key/edm:PropertyRef", ns).get("Name") == "accountid"  # type: ignore[union-attr]
    props = {p.get("Name"): p.attrib for p in account.findall("edm:Property", ns)}
    assert props["name"]["MaxLength"] == "160" and props["_msdyn_company_value"]["Type"] == "Edm.Guid"
    navigation = {n.get("Name"): n.get("Type") for n in account.findall("edm:NavigationProperty", ns)}
    assert navigation["msdyn_company"] == f"{CRM}.cdm_company"
    order = root.find(".//edm:EntityType[@Name='salesorder']", ns)
    assert order is not None and {"customerid_account", "customerid_contact"} <= {
        n.get("Name") for n in order.findall("edm:NavigationProperty", ns)
    }
    assert root.find(".//edm:EntitySet[@Name='accounts']", ns) is not None

    me = await dv.http.get("WhoAmI", headers={"x-sim-user": "7d4b0c7e-0000-0000-0000-000000000001"})
    assert me.status_code == 200
    body = me.json()
    assert body["@odata.context"].endswith(f"$metadata#{CRM}.WhoAmIResponse")
    assert (
        body["UserId"] == "7d4b0c7e-0000-0000-0000-000000000001" and body["BusinessUnitId"] and body["OrganizationId"]
    )
