"""The maps checked against both apps' schema, pure: hand-built metadata, one kind of problem at a time, and all
of them reported at once with map, field and reason."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from shared.maps.check import AppSchema, CheckProblem, Column, Entity, Kind, check_maps
from shared.maps.loader import MapSet, load_maps
from shared.maps.model import Side

MAPS = """
maps:
  - name: customers
    fno: {entity: CustomersV3, key: [dataAreaId, CustomerAccount], fields: [PartyType]}
    dataverse: {table: account, entity_set: accounts, key: [msdyn_company, accountnumber], fields: [customertypecode]}
    company: {}
    depends_on: [groups]
    filters: {fno: "PartyType == PartyType::Organization", dataverse: "customertypecode == 3"}
    fields:
      - {fno: CustomerAccount, dataverse: accountnumber}
      - {fno: OrganizationName, dataverse: name, text: {max_length: 100}}
      - {fno: CustomerGroupId, dataverse: msdyn_customergroupid, lookup: groups}
      - {fno: CreditLimit, dataverse: creditlimit, type: decimal, scale: 2}
      - {fno: CreditLimitIsMandatory, dataverse: msdyn_creditlimitismandatory, type: noyes_boolean}
      - {fno: Employees, dataverse: numberofemployees}
      - {fno: Status, dataverse: msdyn_status, type: enum_choice, value_map: {Active: 1, Closed: 2}}
      - {fno: Memo, dataverse: description}
      - {dataverse: customertypecode, dir: to_dataverse, default: 3}
      - {fno: PartyType, dir: to_fno, default: Organization}
  - name: groups
    fno: {entity: CustomerGroups, key: [dataAreaId, CustomerGroupId]}
    dataverse: {table: msdyn_customergroup, entity_set: msdyn_customergroups, key: [msdyn_company, msdyn_groupid]}
    company: {}
    fields:
      - {fno: CustomerGroupId, dataverse: msdyn_groupid}
"""


@pytest.fixture(scope="module")
def maps(tmp_path_factory: pytest.TempPathFactory) -> MapSet:
    path = Path(tmp_path_factory.mktemp("maps")) / "maps.yaml"
    path.write_text(MAPS, encoding="utf-8")
    return load_maps([path])


def text(name: str, length: int | None = 100) -> Column:
    return Column(name, Kind.TEXT, max_length=length)


def enum(name: str, enum_name: str, *symbols: str) -> Column:
    return Column(name, Kind.CHOICE, options=frozenset(symbols), enum=enum_name)


def fno_schema() -> AppSchema:
    customers = [
        text("dataAreaId", 4), text("CustomerAccount", 20), text("OrganizationName", 100), text("CustomerGroupId", 10),
        Column("CreditLimit", Kind.DECIMAL, precision=32), enum("CreditLimitIsMandatory", "NoYes", "No", "Yes"),
        Column("Employees", Kind.INTEGER), enum("Status", "CustStatus", "Active", "Closed"), text("Memo", None),
        enum("PartyType", "DirPartyBaseType", "None", "Person", "Organization"),
    ]  # fmt: skip
    groups = [text("dataAreaId", 4), text("CustomerGroupId", 10)]
    return AppSchema(
        Side.FNO,
        {
            "CustomersV3": Entity(
                "CustomersV3", {c.name: c for c in customers}, (frozenset({"dataAreaId", "CustomerAccount"}),)
            ),
            "CustomerGroups": Entity(
                "CustomerGroups", {c.name: c for c in groups}, (frozenset({"dataAreaId", "CustomerGroupId"}),)
            ),
        },
        {"NoYes": frozenset({"No", "Yes"}), "DirPartyBaseType": frozenset({"None", "Person", "Organization"})},
    )


def dataverse_schema() -> AppSchema:
    company = Column("msdyn_company", Kind.LOOKUP, targets=frozenset({"cdm_company"}))
    account = [
        company, text("accountnumber", 20), text("name", 160),
        Column("msdyn_customergroupid", Kind.LOOKUP, targets=frozenset({"msdyn_customergroup"})),
        Column("creditlimit", Kind.DECIMAL), Column("msdyn_creditlimitismandatory", Kind.BOOLEAN),
        Column("numberofemployees", Kind.INTEGER), Column("msdyn_status", Kind.CHOICE, options=frozenset({1, 2})),
        text("description", None), Column("customertypecode", Kind.CHOICE, options=frozenset({1, 2, 3})),
    ]  # fmt: skip
    groups = [company, text("msdyn_groupid", 10)]
    return AppSchema(
        Side.DATAVERSE,
        {
            "account": Entity(
                "account", {c.name: c for c in account}, (frozenset({"msdyn_company", "accountnumber"}),)
            ),
            "msdyn_customergroup": Entity(
                "msdyn_customergroup", {c.name: c for c in groups}, (frozenset({"msdyn_company", "msdyn_groupid"}),)
            ),
        },
    )


def changed(schema: AppSchema, entity: str, change: Callable[[dict[str, Column]], None]) -> AppSchema:
    columns = dict(schema.entities[entity].columns)
    change(columns)
    entities = dict(schema.entities) | {entity: replace(schema.entities[entity], columns=columns)}
    return replace(schema, entities=entities)


def only(problems: list[CheckProblem]) -> CheckProblem:
    assert len(problems) == 1, problems
    return problems[0]


def test_the_maps_pass_against_a_matching_schema(maps: MapSet) -> None:
    assert check_maps(maps, fno_schema(), dataverse_schema()) == []


def test_a_missing_entity_and_a_missing_column_are_named(maps: MapSet) -> None:
    fno = replace(fno_schema(), entities={k: v for k, v in fno_schema().entities.items() if k != "CustomerGroups"})
    p = only(check_maps(maps, fno, dataverse_schema()))
    assert (p.map, p.field) == ("groups", "fno.entity") and "CustomerGroups does not exist in F&O" in p.reason
    dataverse = changed(dataverse_schema(), "account", lambda c: c.pop("numberofemployees"))
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert (p.map, p.field, p.reason) == (
        "customers",
        "dataverse account.numberofemployees",
        "the column does not exist in Dataverse",
    )


def test_a_type_that_cannot_carry_the_values(maps: MapSet) -> None:
    dataverse = changed(dataverse_schema(), "account", lambda c: c.update(creditlimit=text("creditlimit", 10)))
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert p.field == "dataverse account.creditlimit" and "decimal of up to 32 digits into text of 10" in p.reason
    dataverse = changed(dataverse_schema(), "account", lambda c: c.update(numberofemployees=text("numberofemployees")))
    p = only(check_maps(maps, fno_schema(), dataverse))  # two-way: text back into F&O's whole number
    assert p.field == "fno CustomersV3.Employees" and p.reason.startswith("text into an integer column")


def test_a_string_longer_than_the_target_allows_unless_the_map_truncates_it(maps: MapSet) -> None:
    dataverse = changed(dataverse_schema(), "account", lambda c: c.update(accountnumber=text("accountnumber", 10)))
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert p.field == "dataverse account.accountnumber" and "up to 20 characters into a column of 10" in p.reason
    # name (160) → OrganizationName (100) passes: the map's text rule cuts it to 100.
    fno = changed(fno_schema(), "CustomersV3", lambda c: c.update(OrganizationName=text("OrganizationName", 60)))
    p = only(check_maps(maps, fno, dataverse_schema()))
    assert p.field == "fno CustomersV3.OrganizationName" and "160 characters into a column of 60" in p.reason


def test_option_and_enum_values_the_other_side_does_not_define(maps: MapSet) -> None:
    dataverse = changed(
        dataverse_schema(), "account",
        lambda c: c.update(msdyn_status=Column("msdyn_status", Kind.CHOICE, options=frozenset({1})),
                           customertypecode=Column("customertypecode", Kind.CHOICE, options=frozenset({1, 2}))),
    )  # fmt: skip
    problems = {(p.field, p.reason.split(" (")[0]) for p in check_maps(maps, fno_schema(), dataverse)}
    assert problems == {
        ("dataverse account.msdyn_status", "the value map's value 2 is not defined"),
        ("dataverse account.customertypecode", "the default 3 is not defined"),
        ("filters.dataverse", "customertypecode is compared with 3, which is not defined"),
    }
    fno = changed(fno_schema(), "CustomersV3", lambda c: c.update(PartyType=enum("PartyType", "DirPartyBaseType",
                                                                                   "None", "Person")))  # fmt: skip
    fno = replace(fno, enums=dict(fno.enums) | {"DirPartyBaseType": frozenset({"None", "Person"})})
    problems = {(p.field, p.reason.split(" (")[0]) for p in check_maps(maps, fno, dataverse_schema())}
    assert problems == {
        ("fno CustomersV3.PartyType", "the default 'Organization' is not defined in DirPartyBaseType"),
        ("filters.fno", "PartyType::Organization is not defined"),
    }


def test_a_key_without_a_matching_alternate_key(maps: MapSet) -> None:
    schema = dataverse_schema()
    account = replace(schema.entities["account"], keys=(frozenset({"accountnumber"}),))
    dataverse = replace(schema, entities=dict(schema.entities) | {"account": account})
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert p.field == "dataverse.key" and "msdyn_company, accountnumber" in p.reason and "accountnumber)" in p.reason


def test_a_lookup_to_a_table_the_maps_do_not_sync(maps: MapSet) -> None:
    dataverse = changed(
        dataverse_schema(), "account",
        lambda c: c.update(description=Column("description", Kind.LOOKUP, targets=frozenset({"contact"}))),
    )  # fmt: skip
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert p.field == "dataverse account.description" and p.reason == "a lookup to contact, which no map syncs"
    dataverse = changed(
        dataverse_schema(), "account",
        lambda c: c.update(msdyn_customergroupid=Column("msdyn_customergroupid", Kind.LOOKUP,
                                                        targets=frozenset({"msdyn_pricegroup"}))),
    )  # fmt: skip
    p = only(check_maps(maps, fno_schema(), dataverse))
    assert "references msdyn_pricegroup, not msdyn_customergroup" in p.reason


def test_every_problem_at_once(maps: MapSet) -> None:
    dataverse = changed(dataverse_schema(), "account", lambda c: [c.pop("name"), c.pop("creditlimit")])
    fno = changed(fno_schema(), "CustomerGroups", lambda c: c.update(CustomerGroupId=text("CustomerGroupId", 5)))
    problems = check_maps(maps, fno, dataverse)
    assert {(p.map, p.field) for p in problems} == {
        ("customers", "dataverse account.name"),
        ("customers", "dataverse account.creditlimit"),
        ("groups", "fno CustomerGroups.CustomerGroupId"),
    }
    assert str(problems[0]).startswith("groups: fno CustomerGroups.CustomerGroupId: text of up to 10")
