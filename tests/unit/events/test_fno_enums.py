"""F&O data events carry enums as real virtual tables do — option-set values (200000000 + …) — which mean nothing
without the environment's metadata. With the virtual table's picklist definitions they are decoded to the F&O
symbols by the options' External name (`ExternalValue`), never by label nor by arithmetic on the number; whatever
cannot be decoded keeps today's behaviour: the values as sent, and apply re-reads the row through OData.

Microsoft Learn, "Entity modeling" (finance and operations virtual tables): an enum is a global option set, matched
on its External name; the integer values are not stable between environments.
https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/power-platform/entity-modeling
"""

from __future__ import annotations

from typing import Any

from shared.events.enums import EnumSymbols, decode_choices, picklist_query, table_options
from shared.events.fno import parse_fno
from shared.events.model import ChangeEvent
from tests.unit.events.builders import body, context, entity, option
from tests.unit.events.test_fno import BINDINGS, VIRTUAL_ID, Catalog

TABLE = "mserp_custcustomerv3entity"


def opt(value: int, external: str | None, label: str) -> dict[str, Any]:
    """One OptionMetadata as the Web API answers it (Microsoft Learn, "OptionMetadata ComplexType")."""
    text = {"Label": label, "LanguageCode": 1033}
    return {"Value": value, "ExternalValue": external, "Label": {"LocalizedLabels": [text], "UserLocalizedLabel": text}}


def picklists(*attributes: tuple[str, list[dict[str, Any]], bool]) -> dict[str, Any]:
    """The answer to `picklist_query`: each attribute's options in GlobalOptionSet (global) or OptionSet (local),
    the other one null — as "Retrieve table definitions by name or MetadataId" documents."""
    value = []
    for name, options, is_global in attributes:
        option_set = {"Options": options}
        value.append(
            {
                "@odata.type": "#Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                "LogicalName": name,
                "MetadataId": f"00000000-0000-0000-0000-{len(value):012d}",
                "OptionSet": None if is_global else option_set,
                "GlobalOptionSet": option_set if is_global else None,
            }
        )
    return {"@odata.context": "…/$metadata#EntityDefinitions('mserp_custcustomerv3entity')/Attributes", "value": value}


# Numbered unlike the simulator on purpose: the values differ between environments, only ExternalValue counts.
METADATA = picklists(
    ("mserp_creditlimitismandatory", [opt(200000007, "No", "No"), opt(200000003, "Yes", "Yes")], True),
    ("mserp_partytype", [opt(200000010, "Person", "Person"), opt(200000011, "LegalEntity", "Legal entity")], True),
)
METADATA["value"][1]["GlobalOptionSet"]["Options"].append(opt(200000012, None, "Retired"))  # no External name


def known() -> EnumSymbols:
    return EnumSymbols({TABLE: table_options(METADATA)})


def parsed(fields: dict[str, object], symbols: EnumSymbols | None, message: str = "OnExternalCreated") -> ChangeEvent:
    target = entity(TABLE, VIRTUAL_ID, fields)
    document = context(message, TABLE, "00000000-0000-0000-0000-000000000000", target)
    (event,) = parse_fno(body(document), {}, BINDINGS, Catalog(), symbols)
    assert isinstance(event, ChangeEvent)
    return event


CUSTOMER = {"mserp_dataareaid": "usmf", "mserp_customeraccount": "US-009", "mserp_organizationname": "Fabrikam"}


def test_the_documented_query_expands_both_option_sets() -> None:
    path, params = picklist_query(TABLE)
    cast = "Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
    assert path == f"EntityDefinitions(LogicalName='{TABLE}')/Attributes/{cast}"
    expand = "OptionSet($select=Options),GlobalOptionSet($select=Options)"
    assert params == {"$select": "LogicalName", "$expand": expand}


def test_known_values_become_their_symbols_by_external_name_not_label_and_no_reread() -> None:
    event = parsed(
        CUSTOMER | {"mserp_creditlimitismandatory": option(200000003), "mserp_partytype": option(200000011)}, known()
    )
    assert not event.reread_required
    assert event.fields["creditlimitismandatory"] == "Yes"
    assert event.fields["partytype"] == "LegalEntity"  # the label is "Legal entity"; 200000011 - 200000000 is 11
    assert event.fields["OrganizationName"] == "Fabrikam"
    assert event.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-009"}


def test_without_metadata_an_enum_keeps_its_number_and_apply_rereads_the_row() -> None:
    event = parsed(CUSTOMER | {"mserp_creditlimitismandatory": option(200000001)}, None)
    assert event.reread_required
    assert event.fields["creditlimitismandatory"] == {"$type": "choice", "value": 200000001}  # never a guessed symbol
    assert event.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-009"}  # what the re-read needs


def test_an_unknown_value_or_column_is_kept_for_a_reread_and_recorded_as_missed() -> None:
    for fields in ({"mserp_partytype": option(200000099)}, {"mserp_newenumfield": option(200000000)}):
        symbols = known()
        event = parsed(CUSTOMER | {"mserp_creditlimitismandatory": option(200000003)} | fields, symbols)
        assert event.reread_required and symbols.missed == {TABLE}
        assert event.fields["creditlimitismandatory"] == {"$type": "choice", "value": 200000003}  # all as sent
    unknown_table = EnumSymbols({})
    assert parsed(CUSTOMER | {"mserp_partytype": option(200000011)}, unknown_table).reread_required
    assert unknown_table.missed == {TABLE}


def test_an_option_without_an_external_name_is_reread_but_not_missed() -> None:
    symbols = known()
    event = parsed(CUSTOMER | {"mserp_partytype": option(200000012)}, symbols)
    assert event.reread_required and event.fields["partytype"] == {"$type": "choice", "value": 200000012}
    assert symbols.missed == set()  # known: reading the metadata again would not help


def test_a_multi_select_choice_is_no_f_and_o_enum_and_is_reread() -> None:
    choices = {"$type": "choices", "values": [200000003]}
    assert decode_choices(TABLE, {"mserp_creditlimitismandatory": choices}, known()) is None
    event = parsed(CUSTOMER | {"mserp_creditlimitismandatory": [option(200000003)]}, known())
    assert event.reread_required


def test_an_event_without_enums_is_taken_as_it_is() -> None:
    event = parsed({"mserp_dataareaid": "usmf", "mserp_customeraccount": "US-010", "mserp_organizationname": "A"}, None)
    assert not event.reread_required and event.fields["OrganizationName"] == "A"


def test_an_update_decodes_too_but_apply_still_rereads_updates() -> None:
    event = parsed(CUSTOMER | {"mserp_partytype": option(200000010)}, known(), "OnExternalUpdated")
    assert event.fields["partytype"] == "Person" and not event.reread_required  # apply decides on updates itself


def test_a_local_option_set_is_read_and_malformed_definitions_decode_nothing() -> None:
    local = table_options(picklists(("mserp_x", [opt(5, "Five", "5"), {"Value": True}, "junk"], False)))
    assert local == {"mserp_x": {5: "Five"}}
    for document in (None, [], {"value": None}, {"value": [{"LogicalName": 3}, "x"]}):
        assert table_options(document) == {}
