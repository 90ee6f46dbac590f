"""The URL and body forms the Dataverse connector builds, checked against Microsoft Learn: "Use an alternate key to
reference a record" (a lookup in an alternate key, also inside `@odata.bind`, is `_<name>_value`) and "Associate
table rows on create" (a multi-table Customer lookup binds through `<name>_account` / `<name>_contact`)."""

from __future__ import annotations

import uuid

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import (
    DataverseClient,
    bind_value,
    column_of,
    lookup_property,
    navigation_property,
    write_body,
)
from shared.connectors.http import ODataTransport

COMPANY = uuid.UUID("00000000-0000-0000-0000-000000000002")


def test_a_lookup_in_an_alternate_key_is_its_lookup_property() -> None:
    client = DataverseClient(ODataTransport("https://org.crm.dynamics.com/api/data/v9.2/", StaticToken("t")))
    key = {lookup_property("msdyn_company"): COMPANY, "accountnumber": "A1"}
    assert client.path("accounts", key) == (
        "accounts(_msdyn_company_value=00000000-0000-0000-0000-000000000002,accountnumber='A1')"
    )
    assert column_of("_msdyn_company_value") == "msdyn_company" and column_of("name") == "name"


def test_a_bind_target_keeps_the_lookup_property_form() -> None:
    target = ("msdyn_customergroups", {"_msdyn_company_value": COMPANY, "msdyn_groupid": "10"})
    assert bind_value(target) == (
        "/msdyn_customergroups(_msdyn_company_value=00000000-0000-0000-0000-000000000002,msdyn_groupid='10')"
    )


def test_the_body_leaves_out_key_columns_named_either_way() -> None:
    key = {"_msdyn_company_value": COMPANY, "accountnumber": "A1"}
    body = write_body(
        {"accountnumber": "A1", "name": "n"},
        {
            "msdyn_company": ("cdm_companies", str(COMPANY)),
            "transactioncurrencyid": ("transactioncurrencies", {"isocurrencycode": "USD"}),
        },
        key,
    )
    assert body == {"name": "n", "transactioncurrencyid@odata.bind": "/transactioncurrencies(isocurrencycode='USD')"}


def test_a_customer_lookup_binds_through_its_per_table_navigation_property() -> None:
    account = ("accounts", {"_msdyn_company_value": COMPANY, "accountnumber": "A1"})
    assert navigation_property("customerid", account) == "customerid_account"
    assert navigation_property("customerid", ("contacts", str(COMPANY))) == "customerid_contact"
    assert navigation_property("msdyn_customergroupid", account) == "msdyn_customergroupid"
    body = write_body({}, {"customerid": account}, None)
    assert list(body) == ["customerid_account@odata.bind"]
