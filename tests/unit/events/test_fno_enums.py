"""F&O data events carry enums as real virtual tables do — option-set values (200000000 + the symbol's index) —
which mean nothing without the environment's metadata: the event keeps them as sent and asks apply to re-read
the row through OData, where enums are symbols (../shared/reference/fno.md, "Data events")."""

from __future__ import annotations

from shared.events.fno import parse_fno
from shared.events.model import ChangeEvent
from tests.unit.events.builders import body, context, entity, option
from tests.unit.events.test_fno import BINDINGS, VIRTUAL_ID, Catalog


def parsed(fields: dict[str, object], message: str = "OnExternalCreated") -> ChangeEvent:
    target = entity("mserp_custcustomerv3entity", VIRTUAL_ID, fields)
    document = context(message, "mserp_custcustomerv3entity", "00000000-0000-0000-0000-000000000000", target)
    (event,) = parse_fno(body(document), {}, BINDINGS, Catalog())
    assert isinstance(event, ChangeEvent)
    return event


def test_an_enum_as_an_option_set_value_makes_apply_reread_the_row() -> None:
    event = parsed(
        {
            "mserp_dataareaid": "usmf",
            "mserp_customeraccount": "US-009",
            "mserp_creditlimitismandatory": option(200000001),
            "mserp_organizationname": "Fabrikam",
        }
    )
    assert event.reread_required
    assert event.fields["creditlimitismandatory"] == {"$type": "choice", "value": 200000001}  # never a symbol
    assert event.fields["OrganizationName"] == "Fabrikam"
    assert event.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-009"}  # what the re-read needs


def test_an_event_without_enums_is_taken_as_it_is() -> None:
    event = parsed({"mserp_dataareaid": "usmf", "mserp_customeraccount": "US-010", "mserp_organizationname": "A"})
    assert not event.reread_required and event.fields["OrganizationName"] == "A"
