"""transform(): directions, keys, company striping, lookups, conversions, filters — and the round trip."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from shared.maps.loader import MapSet, load_maps
from shared.maps.model import Direction, Side, TypeConversion
from shared.maps.transform import LookupRef, MissingReference, transform

MAPS: MapSet = load_maps()
CUSTOMERS = MAPS.maps["customers"]
GROUP_GUID = "11111111-2222-3333-4444-555555555555"
COMPANY_GUID = "99999999-8888-7777-6666-555555555555"


class Known:
    """A resolver that knows one customer group and one company, as the ledger would."""

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        if map_name == "customer_groups" and dataverse_id == GROUP_GUID:
            return {"dataAreaId": "usmf", "CustomerGroupId": "10"}
        return None

    def company_code(self, dataverse_company_id: str) -> str | None:
        return "USMF" if dataverse_company_id == COMPANY_GUID else None


FNO_CUSTOMER: dict[str, JsonValue] = {
    "dataAreaId": "usmf",
    "CustomerAccount": "US-001",
    "OrganizationName": "  Contoso Retail  ",
    "CustomerGroupId": "10",
    "SalesCurrencyCode": "USD",
    "CreditLimit": {"$type": "decimal", "value": "1500.456"},
    "CreditLimitIsMandatory": "Yes",
    "PartyType": "Organization",
    "PrimaryContactEmail": " Buyer@Contoso.COM ",
    "DeliveryAddressLatitude": {"$type": "decimal", "value": "47.6"},
    "SomethingUnmapped": "never leaks",
}


def test_fno_customer_into_dataverse() -> None:
    row = transform(CUSTOMERS, Side.FNO, FNO_CUSTOMER, MAPS.maps)
    assert row.into is Side.DATAVERSE and row.entity_set == "accounts" and not row.errors
    assert row.key == {"msdyn_company": "USMF", "accountnumber": "US-001"}
    assert row.company == "usmf"
    assert row.values["name"] == "Contoso Retail"  # trimmed
    assert row.values["emailaddress1"] == "buyer@contoso.com"  # trimmed, lower case
    assert row.values["creditlimit"] == {"$type": "decimal", "value": "1500.46"}  # scale 2
    assert row.values["msdyn_creditlimitismandatory"] is True  # NoYes → boolean
    assert row.values["address1_latitude"] == {"$type": "decimal", "value": "47.6"}
    assert row.values["customertypecode"] == 3 and row.values["address1_addresstypecode"] == 2  # defaults
    assert "SomethingUnmapped" not in row.values and "PartyType" not in row.values and "LanguageId" not in row.values
    assert row.lookups["msdyn_customergroupid"] == LookupRef(
        "customer_groups", "msdyn_customergroups", {"msdyn_company": "USMF", "msdyn_groupid": "10"}
    )
    assert row.lookups["transactioncurrencyid"] == LookupRef(
        "currencies", "transactioncurrencies", {"isocurrencycode": "USD"}
    )
    assert row.lookups["msdyn_company"] == LookupRef("companies", "cdm_companies", {"cdm_companycode": "USMF"})
    assert row.passes_filter


def test_dataverse_account_into_fno_resolves_lookups_through_the_ledger() -> None:
    account: dict[str, JsonValue] = {
        "msdyn_company": {"$type": "lookup", "table": "cdm_company", "id": COMPANY_GUID, "name": "Contoso"},
        "accountnumber": "US-001",
        "name": "Contoso Retail",
        "msdyn_customergroupid": {"$type": "lookup", "table": "msdyn_customergroup", "id": GROUP_GUID, "name": None},
        "msdyn_creditlimitismandatory": False,
        "address1_latitude": {"$type": "decimal", "value": "1.0"},  # one-way to Dataverse: never written back
        "customertypecode": {"$type": "choice", "value": 3},
    }
    row = transform(CUSTOMERS, Side.DATAVERSE, account, MAPS.maps, Known())
    assert row.entity_set == "CustomersV3" and not row.errors and not row.missing
    assert row.key == {"dataAreaId": "usmf", "CustomerAccount": "US-001"}
    assert row.values["CustomerGroupId"] == "10"
    assert row.values["CreditLimitIsMandatory"] == "No"
    assert row.values["PartyType"] == "Organization" and row.values["LanguageId"] == "en-us"
    assert "DeliveryAddressLatitude" not in row.values
    assert row.passes_filter


def test_a_lookup_the_ledger_does_not_know_is_reported_missing_not_guessed() -> None:
    account: dict[str, JsonValue] = {
        "msdyn_company": "USMF",
        "accountnumber": "US-002",
        "msdyn_customergroupid": {
            "$type": "lookup",
            "table": "msdyn_customergroup",
            "id": "unknown-group",
            "name": None,
        },
    }
    row = transform(CUSTOMERS, Side.DATAVERSE, account, MAPS.maps, Known())
    assert row.missing == [MissingReference("CustomerGroupId", "customer_groups", account["msdyn_customergroupid"])]
    assert "CustomerGroupId" not in row.values


def test_a_partial_update_stays_partial() -> None:
    row = transform(
        CUSTOMERS, Side.FNO, {"dataAreaId": "usmf", "CustomerAccount": "US-001", "CreditLimit": 10}, MAPS.maps
    )
    assert set(row.values) == {"creditlimit", "customertypecode", "address1_addresstypecode"}  # + the defaults


def test_filters_decide_per_side() -> None:
    person = {**FNO_CUSTOMER, "PartyType": "Person"}
    assert not transform(CUSTOMERS, Side.FNO, person, MAPS.maps).passes_filter
    contact_type = {"msdyn_company": "USMF", "accountnumber": "X", "customertypecode": {"$type": "choice", "value": 1}}
    assert not transform(CUSTOMERS, Side.DATAVERSE, contact_type, MAPS.maps).passes_filter


def test_without_a_company_the_row_is_an_error() -> None:
    row = transform(CUSTOMERS, Side.FNO, {"CustomerAccount": "US-001"}, MAPS.maps)
    assert any("company" in e for e in row.errors)


def test_value_maps_and_enum_choices_both_ways() -> None:
    orders = MAPS.maps["sales_orders"]
    status = {"dataAreaId": "usmf", "SalesOrderNumber": "SO-1", "SalesOrderProcessingStatus": "Invoiced"}
    row = transform(orders, Side.FNO, status, MAPS.maps)
    assert row.values["msdyn_processingstatus"] == {"$type": "choice", "value": 192350005}
    assert "SalesOrderNumber" not in row.values and row.key["msdyn_salesordernumber"] == "SO-1"
    unknown = transform(orders, Side.FNO, {**status, "SalesOrderProcessingStatus": "Teleported"}, MAPS.maps)
    assert unknown.errors and "no value_map entry" in unknown.errors[0]


def test_one_way_maps_never_write_backwards() -> None:
    products = MAPS.maps["released_products"]
    row = transform(products, Side.DATAVERSE, {"msdyn_productnumber": "P1", "name": "Bike"}, MAPS.maps)
    assert row.values == {} and row.lookups == {}
    forward = transform(
        products, Side.FNO, {"dataAreaId": "usmf", "ProductNumber": "P1", "ProductName": "Bike"}, MAPS.maps
    )
    assert forward.key == {"msdyn_productnumber": "P1"} and forward.values["name"] == "Bike"
    assert "msdyn_company" not in forward.key  # products are shared by all companies in Dataverse


def load_text(tmp_path: Any, text: str) -> MapSet:
    """A map set of one map written out as a user would, in its own file."""
    path = tmp_path / "map.yaml"
    path.write_text(text)
    return load_maps([path])


def test_derived_values_from_expressions(tmp_path: Any) -> None:
    people = load_text(
        tmp_path,
        "name: people\n"
        "fno: {entity: People, key: [PersonId]}\n"
        "dataverse: {table: contact, entity_set: contacts, key: [msdyn_personid]}\n"
        "fields:\n"
        "  - {fno: PersonId, dataverse: msdyn_personid}\n"
        "  - {fno: FirstName, dir: to_fno, to_fno: \"split(fullname, ' ', 0)\"}\n"
        "  - {fno: LastName, dir: to_fno, to_fno: \"split(fullname, ' ', -1)\"}\n"
        "  - {dataverse: fullname, dir: to_dataverse, to_dataverse: \"concat(FirstName, ' ', LastName)\"}\n"
        '  - {fno: Score, dataverse: msdyn_score, dir: to_dataverse, to_dataverse: "Points * 2"}\n'
        "  - {fno: Points, dir: to_fno, default: 0}\n",
    )
    compiled = people.maps["people"]
    out = transform(
        compiled, Side.FNO, {"PersonId": "7", "FirstName": "Ada", "LastName": "Lovelace", "Points": 21}, people.maps
    )
    assert out.values == {"fullname": "Ada Lovelace", "msdyn_score": 42}
    back = transform(
        compiled, Side.DATAVERSE, {"msdyn_personid": "7", "fullname": "Grace Brewster Hopper"}, people.maps
    )
    assert back.key == {"PersonId": "7"} and back.values == {"FirstName": "Grace", "LastName": "Hopper", "Points": 0}


def test_defaults_fill_absent_and_null_values_and_a_bad_field_does_not_stop_the_others(tmp_path: Any) -> None:
    things = load_text(
        tmp_path,
        "name: things\n"
        "fno: {entity: Things, key: [ThingId]}\n"
        "dataverse: {table: msdyn_thing, entity_set: msdyn_things, key: [msdyn_thingid]}\n"
        "fields:\n"
        "  - {fno: ThingId, dataverse: msdyn_thingid}\n"
        "  - {fno: Kind, dataverse: msdyn_kind, default: General}\n"
        "  - {fno: Active, dataverse: msdyn_active, type: noyes_boolean}\n"
        "  - {fno: Note, dataverse: msdyn_note, text: {trim: true, case: upper, max_length: 3}}\n",
    )
    compiled = things.maps["things"]

    def run(record: dict[str, JsonValue]) -> Any:
        return transform(compiled, Side.FNO, record, things.maps)

    assert run({"ThingId": "1"}).values == {"msdyn_kind": "General"}  # absent: the default; others stay absent
    assert run({"ThingId": "1", "Kind": None}).values == {"msdyn_kind": "General"}  # null: the default
    bad = run({"ThingId": "1", "Kind": "Tool", "Active": "Maybe", "Note": "  abcdef "})
    assert bad.key == {"msdyn_thingid": "1"}
    assert bad.values == {"msdyn_kind": "Tool", "msdyn_note": "ABC"}  # the bad field left out, the rest written
    assert bad.errors == ["Active ↔ msdyn_active: 'Maybe' is not NoYes (Yes/No)"]


def test_decimals_and_noyes_in_both_directions_keep_their_rules(tmp_path: Any) -> None:
    rates = load_text(
        tmp_path,
        "name: rates\n"
        "fno: {entity: Rates, key: [RateId]}\n"
        "dataverse: {table: msdyn_rate, entity_set: msdyn_rates, key: [msdyn_rateid]}\n"
        "fields:\n"
        "  - {fno: RateId, dataverse: msdyn_rateid}\n"
        "  - {fno: Rate, dataverse: msdyn_rate, type: decimal, scale: 8}\n"
        "  - {fno: Active, dataverse: msdyn_active, type: noyes_boolean}\n",
    )
    compiled = rates.maps["rates"]

    def into_dataverse(record: dict[str, JsonValue]) -> Any:
        return transform(compiled, Side.FNO, record, rates.maps)

    tiny = into_dataverse({"RateId": "1", "Rate": {"$type": "decimal", "value": "0.00000001"}, "Active": "No"})
    assert tiny.values == {"msdyn_rate": {"$type": "decimal", "value": "0.00000001"}, "msdyn_active": False}
    assert into_dataverse({"RateId": "1", "Rate": 2}).values["msdyn_rate"] == {
        "$type": "decimal",
        "value": "2.00000000",
    }
    assert into_dataverse({"RateId": "1", "Rate": None, "Active": None}).values == {
        "msdyn_rate": None,
        "msdyn_active": None,
    }
    bad = into_dataverse({"RateId": "1", "Rate": {"$type": "decimal", "value": "lots"}, "Active": "Yes"})
    assert bad.values == {"msdyn_active": True} and bad.errors == ["Rate ↔ msdyn_rate: 'lots' is not a number"]
    huge = into_dataverse({"RateId": "1", "Rate": {"$type": "decimal", "value": "1" * 30}})
    assert huge.errors == [f"Rate ↔ msdyn_rate: '{'1' * 30}' has too many digits for 8 decimal places"]
    back = transform(compiled, Side.DATAVERSE, {"msdyn_rateid": "1", "msdyn_active": True}, rates.maps)
    assert back.values == {"Active": "Yes"}
    back = transform(compiled, Side.DATAVERSE, {"msdyn_rateid": "1", "msdyn_active": False}, rates.maps)
    assert back.values == {"Active": "No"}


# --- the round trip --------------------------------------------------------------------------------------------


def _two_way_fields() -> list[Any]:
    m = CUSTOMERS.map
    return [f for f in m.fields if m.direction_of(f) is Direction.BOTH and f.fno and f.dataverse and not f.lookup]


_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40)


def _value_for(f: Any) -> st.SearchStrategy[JsonValue]:
    if f.type is TypeConversion.NOYES_BOOLEAN:
        return st.sampled_from(["Yes", "No"])
    if f.type is TypeConversion.DECIMAL:
        places = f.scale or 0
        return st.decimals(
            min_value=-(10**9), max_value=10**9, places=places, allow_nan=False, allow_infinity=False
        ).map(lambda d: {"$type": "decimal", "value": format(d, "f")})
    if f.value_map:
        return st.sampled_from(sorted(f.value_map))
    if f.text is not None:  # trimmed, cased or truncated: generate values those rules keep as they are
        return (
            _text.map(lambda s: s.strip() or "x")
            .map(lambda s: s.lower() if f.text.case == "lower" else s.upper() if f.text.case == "upper" else s)
            .map(lambda s: s[: f.text.max_length] if f.text.max_length else s)
        )
    return st.one_of(_text, st.integers(min_value=-(10**6), max_value=10**6))


@st.composite
def fno_customers(draw: st.DrawFn) -> dict[str, JsonValue]:
    record: dict[str, JsonValue] = {"dataAreaId": draw(st.sampled_from(["usmf", "usrt", "demf"]))}
    for f in _two_way_fields():
        record[f.fno] = draw(_value_for(f))
    return record


@settings(max_examples=200, deadline=None)
@given(fno_customers())
def test_two_way_fields_survive_fno_to_dataverse_to_fno(original: dict[str, JsonValue]) -> None:
    into_dataverse = transform(CUSTOMERS, Side.FNO, original, MAPS.maps)
    assert not into_dataverse.errors
    as_dataverse: dict[str, JsonValue] = {**into_dataverse.key, **into_dataverse.values}
    back = transform(CUSTOMERS, Side.DATAVERSE, as_dataverse, MAPS.maps)
    assert not back.errors
    again = {**back.key, **back.values}
    for f in _two_way_fields():
        assert again[f.fno] == original[f.fno], f.label
    assert again["dataAreaId"] == original["dataAreaId"]


def test_decimal_round_trip_keeps_exact_digits() -> None:
    row = transform(
        CUSTOMERS,
        Side.FNO,
        {"dataAreaId": "usmf", "CustomerAccount": "A", "CreditLimit": {"$type": "decimal", "value": "0.10"}},
        MAPS.maps,
    )
    assert Decimal(row.values["creditlimit"]["value"]) == Decimal("0.10")  # type: ignore[index,call-overload]


@pytest.mark.parametrize("name", sorted(MAPS.maps))
def test_every_shipped_map_transforms_an_empty_keyed_row_without_crashing(name: str) -> None:
    compiled = MAPS.maps[name]
    m = compiled.map
    record: dict[str, JsonValue] = {k: "usmf" if k == m.company_field(Side.FNO) else "K1" for k in m.fno.key}
    transform(compiled, Side.FNO, record, MAPS.maps)
    transform(compiled, Side.DATAVERSE, {k: "K1" for k in m.dataverse.key}, MAPS.maps)
