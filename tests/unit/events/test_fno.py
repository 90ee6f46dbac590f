"""F&O notifications → ChangeEvent: data events, business events through bindings, arrays, the test message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.events.bindings import BindingsError, load_bindings
from shared.events.errors import InvalidNotification
from shared.events.fno import BusinessEventBinding, FnoEntityNames, parse_fno
from shared.events.model import ChangeEvent, Ignored, Operation, Side
from tests.unit.events.builders import body, business_event, context, entity, option

SAMPLES = Path(__file__).parents[2] / "fixtures" / "samples"
VIRTUAL_ID = "9f0e8d7c-6b5a-4938-8271-605f4e3d2c1b"
BINDINGS = {
    "SalesOrderConfirmedBusinessEvent": BusinessEventBinding(
        business_event_id="SalesOrderConfirmedBusinessEvent",
        entity="SalesOrderHeadersV2",
        keys=["SalesOrderNumber"],
        fields={"SalesOrderNumber": "SalesOrderNumber", "Status": "SalesOrderStatus", "Amount": "TotalAmount"},
    )
}


class Catalog:
    def for_virtual_table(self, table: str) -> FnoEntityNames | None:
        if table == "mserp_custcustomerv3entity":
            return FnoEntityNames(
                "CustomersV3",
                {
                    "customeraccount": "CustomerAccount",
                    "organizationname": "OrganizationName",
                    "creditlimit": "CreditLimit",
                },
                keys=("dataAreaId", "CustomerAccount"),
            )
        return None


def data_event(message: str, fields: dict[str, object], pre: dict[str, object] | None = None) -> dict[str, object]:
    target = entity("mserp_custcustomerv3entity", VIRTUAL_ID, fields)
    pre_image = entity("mserp_custcustomerv3entity", VIRTUAL_ID, pre, typed=False) if pre else None
    ctx = context(message, "mserp_custcustomerv3entity", "00000000-0000-0000-0000-000000000000", target, pre=pre_image)
    return ctx


def one(document: object, catalog: object | None = None) -> ChangeEvent:
    (event,) = parse_fno(body(document), {}, BINDINGS, catalog)  # type: ignore[arg-type]
    assert isinstance(event, ChangeEvent)
    return event


def test_a_data_event_becomes_a_change_of_the_data_entity_with_real_field_names() -> None:
    document = data_event(
        "OnExternalUpdated",
        {
            "mserp_customeraccount": "US-001",
            "mserp_organizationname": "Contoso",
            "mserp_dataareaid": "USMF",
            "mserp_creditlimit": 1000.5,
            "mserp_customertype": option(200000001),
        },
    )
    event = one(document, Catalog())
    assert event.source == Side.FNO and event.operation == Operation.UPDATE
    assert event.entity == "CustomersV3" and event.row_id == VIRTUAL_ID and event.company == "usmf"
    assert event.fields["CustomerAccount"] == "US-001" and event.fields["OrganizationName"] == "Contoso"
    assert event.fields["CreditLimit"] == {"$type": "decimal", "value": "1000.5"}
    assert event.fields["customertype"] == {"$type": "choice", "value": 200000001}  # unknown to the catalog: as sent
    assert event.keys == {"dataAreaId": "USMF", "CustomerAccount": "US-001"}
    assert set(event.changed_fields) == {
        "CustomerAccount",
        "OrganizationName",
        "dataAreaId",
        "CreditLimit",
        "customertype",
    }


def test_without_a_catalog_the_virtual_names_lose_their_prefix() -> None:
    event = one(data_event("OnExternalCreated", {"mserp_customeraccount": "US-002", "mserp_dataareaid": "usrt"}))
    assert event.operation == Operation.CREATE and event.entity == "custcustomerv3entity"
    assert event.fields == {"customeraccount": "US-002", "dataAreaId": "usrt"} and event.company == "usrt"


def test_a_data_event_delete_carries_only_the_id() -> None:
    document = context(
        "OnExternalDeleted",
        "mserp_custcustomerv3entity",
        "00000000-0000-0000-0000-000000000000",
        {"LogicalName": "mserp_custcustomerv3entity", "Id": VIRTUAL_ID},
    )
    event = one(document, Catalog())
    assert event.operation == Operation.DELETE and event.row_id == VIRTUAL_ID and event.fields == {}


def test_a_bound_business_event_becomes_a_row_change() -> None:
    document = business_event(
        "SalesOrderConfirmedBusinessEvent",
        5637144576,
        SalesOrderNumber="SO-000123",
        Status="Confirmed",
        Amount=1234.56,
        Ignored="x",
    )
    event = one(document)
    assert event.entity == "SalesOrderHeadersV2" and event.operation == Operation.UPDATE
    assert event.company == "usmf"
    assert event.keys == {"dataAreaId": "usmf", "SalesOrderNumber": "SO-000123"}
    assert event.row_id == "dataAreaId=usmf|SalesOrderNumber=SO-000123"
    assert event.fields == {
        "SalesOrderNumber": "SO-000123",
        "SalesOrderStatus": "Confirmed",
        "TotalAmount": {"$type": "decimal", "value": "1234.56"},
    }
    assert event.source_version == "5637144576"
    assert event.occurred_at.isoformat() == "2023-11-14T22:13:20.123456+00:00"
    assert event.initiating_user == "a1b2c3d4-0000-1111-2222-333344445555"
    assert event.correlation_id == "6d0c9f3a-61c2-4f3b-9d7d-3a1b2c3d4e5f"


def test_the_same_business_event_twice_has_one_id() -> None:
    document = business_event("SalesOrderConfirmedBusinessEvent", 7, SalesOrderNumber="SO-1")
    assert one(document).event_id == one(document).event_id
    assert one(document).event_id != one({**document, "ControlNumber": 8, "EventId": "OTHER"}).event_id


def test_unbound_business_events_and_the_schema_sample_are_ignored() -> None:
    sample = json.loads((SAMPLES / "fno-business-event-schema-batch-job-started.json").read_text())
    (item,) = parse_fno(body(sample), {}, BINDINGS)
    assert isinstance(item, Ignored) and not item.test


def test_the_endpoint_test_message_is_recognised() -> None:
    (item,) = parse_fno(body(business_event("BusinessEventsTestEndpointContract", 0)), {}, BINDINGS)
    assert isinstance(item, Ignored) and item.test


def test_an_array_of_either_form() -> None:
    items = parse_fno(
        body(
            [
                business_event("SalesOrderConfirmedBusinessEvent", 1, SalesOrderNumber="SO-1"),
                data_event("OnExternalUpdated", {"mserp_customeraccount": "US-1", "mserp_dataareaid": "usmf"}),
                business_event("Unbound", 2),
            ]
        ),
        {},
        BINDINGS,
        Catalog(),
    )
    assert [type(i).__name__ for i in items] == ["ChangeEvent", "ChangeEvent", "Ignored"]


def test_a_business_event_wrapped_in_a_dataverse_context_is_unwrapped() -> None:
    inner = business_event("SalesOrderConfirmedBusinessEvent", 3, SalesOrderNumber="SO-3")
    wrapper = context("msdyn_SalesOrderConfirmed", "none", "00000000-0000-0000-0000-000000000000", None)
    wrapper["InputParameters"] = [{"key": "payload", "value": json.dumps(inner)}]
    assert one(wrapper).keys == {"dataAreaId": "usmf", "SalesOrderNumber": "SO-3"}


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"Hello": "world"}, "neither an F&O business event"),
        ([], "empty array"),
        ([{"Hello": 1}], r"body\[0\]"),
        (business_event("SalesOrderConfirmedBusinessEvent", 1), "SalesOrderNumber"),
        (
            {
                **business_event("SalesOrderConfirmedBusinessEvent", 1, SalesOrderNumber="S"),
                "EventTimeIso8601": "yesterday",
            },
            "EventTimeIso8601",
        ),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(document: object, words: str) -> None:
    with pytest.raises(InvalidNotification, match=words):
        parse_fno(body(document), {}, BINDINGS)


def test_the_shipped_bindings_load_and_duplicates_are_refused(tmp_path: Path) -> None:
    shipped = load_bindings()
    assert "SalesOrderConfirmedBusinessEvent" in shipped
    twice = tmp_path / "b.yaml"
    twice.write_text("bindings:\n" + "  - {business_event_id: A, entity: E, keys: [K]}\n" * 2)
    with pytest.raises(BindingsError, match="bound twice"):
        load_bindings(twice)
