"""The adapters' parsers, pure: F&O CSDL and Dataverse EntityDefinitions (documented shapes) → the check's model."""

from __future__ import annotations

from shared.maps.check import Kind
from shared.maps.metadata import dataverse_entity, fno_schema
from shared.maps.model import Side

CSDL = b"""<?xml version="1.0" encoding="utf-8"?>
<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx"><edmx:DataServices>
<Schema Namespace="Microsoft.Dynamics.DataEntities" xmlns="http://docs.oasis-open.org/odata/ns/edm">
  <EntityType Name="CustomerV3">
    <Key><PropertyRef Name="dataAreaId" /><PropertyRef Name="CustomerAccount" /></Key>
    <Property Name="dataAreaId" Type="Edm.String" Nullable="false" MaxLength="4" />
    <Property Name="CustomerAccount" Type="Edm.String" Nullable="false" MaxLength="20" />
    <Property Name="CreditLimit" Type="Edm.Decimal" Precision="32" Scale="6" />
    <Property Name="PaymentTermsBaseDays" Type="Edm.Int32" />
    <Property Name="CreditLimitIsMandatory" Type="Microsoft.Dynamics.DataEntities.NoYes" />
    <Property Name="SalesMemo" Type="Edm.String" />
  </EntityType>
  <EnumType Name="NoYes"><Member Name="No" Value="0" /><Member Name="Yes" Value="1" /></EnumType>
  <EntityContainer Name="Resources">
    <EntitySet Name="CustomersV3" EntityType="Microsoft.Dynamics.DataEntities.CustomerV3" />
  </EntityContainer>
</Schema></edmx:DataServices></edmx:Edmx>"""


def test_fno_csdl_gives_entities_by_entity_set_with_keys_types_lengths_and_enums() -> None:
    schema = fno_schema(CSDL)
    assert schema.side is Side.FNO and set(schema.entities) == {"CustomersV3"}
    customers = schema.entities["CustomersV3"]
    assert customers.keys == (frozenset({"dataAreaId", "CustomerAccount"}),)
    columns = customers.columns
    assert (columns["CustomerAccount"].kind, columns["CustomerAccount"].max_length) == (Kind.TEXT, 20)
    assert (columns["CreditLimit"].kind, columns["CreditLimit"].precision) == (Kind.DECIMAL, 32)
    assert columns["PaymentTermsBaseDays"].kind is Kind.INTEGER
    assert columns["CreditLimitIsMandatory"].kind is Kind.CHOICE
    assert columns["CreditLimitIsMandatory"].options == frozenset({"No", "Yes"})
    assert columns["CreditLimitIsMandatory"].enum == "NoYes" and schema.enums["NoYes"] == frozenset({"No", "Yes"})
    assert columns["SalesMemo"].max_length is None


def test_dataverse_definitions_and_the_picklist_cast_give_columns_options_lookups_and_alternate_keys() -> None:
    # Shapes from Microsoft Learn, "Query table definitions using the Web API".
    definition = {
        "LogicalName": "account",
        "Attributes": [
            {"@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata", "LogicalName": "accountnumber",
             "AttributeType": "String", "AttributeTypeName": {"Value": "StringType"}, "MaxLength": 20},
            {"LogicalName": "msdyn_company", "AttributeType": "Lookup", "Targets": ["cdm_company"]},
            {"LogicalName": "msdyn_companyname", "AttributeType": "String", "AttributeOf": "msdyn_company"},
            {"LogicalName": "customertypecode", "AttributeType": "Picklist"},
            {"LogicalName": "creditlimit", "AttributeType": "Money", "Precision": 2},
            {"LogicalName": "numberofemployees", "AttributeType": "Integer"},
            {"LogicalName": "msdyn_creditlimitismandatory", "AttributeType": "Boolean"},
            {"LogicalName": "description", "AttributeType": "Memo", "MaxLength": 2000},
        ],
        "Keys": [{"LogicalName": "msdyn_company_accountnumber", "KeyAttributes": ["msdyn_company", "accountnumber"]}],
    }  # fmt: skip
    picklists = {"value": [{"LogicalName": "customertypecode", "OptionSet": {"Options": [{"Value": 1}, {"Value": 3}]}}]}
    account = dataverse_entity(definition, picklists)
    assert account.name == "account" and account.keys == (frozenset({"msdyn_company", "accountnumber"}),)
    columns = account.columns
    assert (columns["accountnumber"].kind, columns["accountnumber"].max_length) == (Kind.TEXT, 20)
    assert columns["msdyn_company"].kind is Kind.LOOKUP and columns["msdyn_company"].targets == {"cdm_company"}
    assert "msdyn_companyname" not in columns  # the lookup's name column is not a column a map writes
    assert columns["customertypecode"].options == frozenset({1, 3})
    assert columns["creditlimit"].kind is Kind.DECIMAL and columns["numberofemployees"].kind is Kind.INTEGER
    assert columns["msdyn_creditlimitismandatory"].kind is Kind.BOOLEAN
    assert (columns["description"].kind, columns["description"].max_length) == (Kind.TEXT, 2000)
