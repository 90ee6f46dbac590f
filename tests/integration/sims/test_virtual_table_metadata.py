"""The Dataverse simulator publishes the F&O entities' virtual tables (`mserp_*`) as Dataverse does, so that the
bridge can decode F&O data events' enums: an enum is a Picklist backed by a global option set whose options' External
name (`ExternalValue`) is the F&O symbol and whose label is the enum value's label (Microsoft Learn, "Entity
modeling", https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/power-platform/entity-modeling). The
options are numbered as the F&O simulator's data events number them, as one environment would.

Read with the documented query ("Retrieve table definitions by name or MetadataId": a picklist cast expanding
OptionSet and GlobalOptionSet — the global one filled, the local one null) through the bridge's own client.
Microsoft's `PowerPlatform-Dataverse-Client` reads picklists only through `OptionSet` (for label → value on writes to
a table), which is null for a global option set: it has no reader of these definitions to prove the simulator with.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import NotFound
from shared.connectors.http import ODataTransport
from shared.events.enums import EnumSymbols, table_options
from shared.events.fno import parse_fno
from shared.events.model import ChangeEvent
from shared.maps.loader import load_maps
from tests.integration.sims.conftest import Sim
from tests.integration.sims.events import data_event

CRM = "Microsoft.Dynamics.CRM"
TABLE = "mserp_custcustomerv3entity"
PICKLISTS = f"EntityDefinitions(LogicalName='{TABLE}')/Attributes/{CRM}.PicklistAttributeMetadata"


@pytest.fixture
async def client(dv: Sim) -> AsyncIterator[DataverseClient]:
    async with DataverseClient(ODataTransport(f"{dv.url}/api/data/v9.2/", StaticToken("t"))) as dataverse:
        yield dataverse  # type: ignore[misc]


async def test_the_f_and_o_simulators_data_event_decodes_with_the_virtual_tables_options(
    dv: Sim, fo: Sim, client: DataverseClient
) -> None:
    row = {"dataAreaId": "usmf", "CustomerAccount": "VT-1", "PartyType": "LegalEntity", "OrganizationName": "Enums",
           "CreditLimitIsMandatory": "Yes", "IsOneTimeCustomer": "No"}  # fmt: skip
    notification = await data_event(fo, row)
    document = await client.picklist_definitions(TABLE)  # the bridge's own read, over HTTP
    symbols = EnumSymbols({TABLE: table_options(document)})
    (event,) = parse_fno(notification, {}, {}, load_maps(), symbols)
    assert isinstance(event, ChangeEvent) and not event.reread_required and not symbols.missed
    assert (event.fields["PartyType"], event.fields["CreditLimitIsMandatory"], event.fields["IsOneTimeCustomer"]) == (
        "LegalEntity", "Yes", "No"
    )  # fmt: skip
    # A decoder matching labels would fail: the label is the enum value's, not its symbol.
    (party,) = [a for a in document["value"] if a["LogicalName"] == "mserp_partytype"]
    labels = {o["Value"]: o["Label"]["UserLocalizedLabel"]["Label"] for o in party["GlobalOptionSet"]["Options"]}
    sent = json.loads(notification)["InputParameters"][0]["value"]["Attributes"]
    (number,) = [a["value"]["Value"] for a in sent if a["key"] == "mserp_partytype"]
    assert labels[number] == "Legal entity"


async def test_a_virtual_table_is_defined_as_dataverse_defines_it(dv: Sim) -> None:
    table = (await dv.http.get(f"EntityDefinitions(LogicalName='{TABLE}')")).json()
    assert (table["TableType"], table["ExternalName"], table["PrimaryIdAttribute"]) == (
        "Virtual", "CustomersV3", f"{TABLE}id"
    )  # fmt: skip
    native = (await dv.http.get("EntityDefinitions(LogicalName='account')", params={"$select": "TableType"})).json()
    assert native["TableType"] == "Standard"
    found = (await dv.http.get("EntityDefinitions", params={"$filter": f"LogicalName eq '{TABLE}'"})).json()["value"]
    assert [t["LogicalName"] for t in found] == [TABLE]

    answer = await dv.http.get(PICKLISTS, params={"$expand": "OptionSet,GlobalOptionSet"})
    assert answer.status_code == 200, answer.text
    party = {a["LogicalName"]: a for a in answer.json()["value"]}["mserp_partytype"]
    assert party["OptionSet"] is None and party["ExternalName"] == "PartyType"
    option_set = party["GlobalOptionSet"]
    assert option_set["IsGlobal"] is True and option_set["Name"] == "mserp_dirpartybasetype"
    options = {o["ExternalValue"]: o["Value"] for o in option_set["Options"]}
    assert options["None"] == 200000000 and options["Organization"] == 200000002  # as the data events number them
    attributes = (await dv.http.get(f"EntityDefinitions(LogicalName='{TABLE}')/Attributes")).json()["value"]
    kinds = {a["LogicalName"]: a["AttributeType"] for a in attributes}
    assert kinds["mserp_creditlimit"] == "Decimal" and kinds["mserp_organizationname"] == "String"

    # Dataverse's own choices: a local option set, GlobalOptionSet null and no External names.
    local = await dv.http.get(
        f"EntityDefinitions(LogicalName='account')/Attributes/{CRM}.PicklistAttributeMetadata",
        params={"$select": "LogicalName", "$expand": "OptionSet($select=Options),GlobalOptionSet($select=Options)"},
    )
    customer_type = {a["LogicalName"]: a for a in local.json()["value"]}["customertypecode"]
    assert customer_type["GlobalOptionSet"] is None
    assert {o["ExternalValue"] for o in customer_type["OptionSet"]["Options"]} == {None}


async def test_unknown_tables_and_unsupported_query_forms_are_refused(dv: Sim, client: DataverseClient) -> None:
    missing = await dv.http.get("EntityDefinitions(LogicalName='mserp_nosuchentity')/Attributes")
    assert missing.status_code == 404 and set(missing.json()["error"]) >= {"code", "message"}
    with pytest.raises(NotFound):
        await client.picklist_definitions("mserp_nosuchentity")
    attributes = f"EntityDefinitions(LogicalName='{TABLE}')/Attributes"
    for path, params in (
        (attributes, {"$expand": "OptionSet"}),  # no cast: AttributeMetadata has no OptionSet
        (f"{attributes}/{CRM}.StringAttributeMetadata", {"$expand": "OptionSet"}),
        (PICKLISTS, {"$expand": "Options"}),
        (f"EntityDefinitions(LogicalName='{TABLE}')", {"$expand": "Attributes($expand=OptionSet)"}),
        (PICKLISTS, {"$select": "LogicalName,Nonsense"}),
    ):
        refused = await dv.http.get(path, params=params)
        assert refused.status_code == 400, (path, params, refused.text)
        assert "Could not find a property named" in refused.json()["error"]["message"]
