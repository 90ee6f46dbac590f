"""Property: whatever bytes arrive, ingest either queues well-formed changes or refuses the body with
`InvalidNotification` and a short reason. Any other exception is what the endpoint would answer 500 with."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from shared.bus.publisher import to_message
from shared.events.bindings import load_bindings
from shared.events.errors import ChangeTooLarge, InvalidNotification
from shared.events.model import ChangeEvent, Side
from shared.ingest.ordering import ordering_key
from shared.ingest.service import MAX_CHANGE_BYTES, IngestResult, IngestService
from shared.ingest.wiring import mapped_entities
from shared.maps.loader import load_maps
from tests.unit.events.builders import business_event
from tests.unit.events.mutations import bodies, dataverse_seeds, dumps, fno_seeds, headers

MAPS = load_maps()
CREDIT = "CustomerCreditLimitChangedBusinessEvent"  # bound in maps/business-events.yaml
FUZZ = settings(
    max_examples=1500,
    derandomize=True,  # the same examples on every run: CI stays stable, a failure reproduces
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Queue:
    """The publisher's contract, in memory: what would have been queued."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    async def publish(self, events: Sequence[ChangeEvent]) -> None:
        self.events.extend(events)


def ingest(source: Side, body: bytes, sent: dict[str, str]) -> tuple[IngestResult | InvalidNotification, Queue]:
    queue = Queue()
    service = IngestService(
        queue,
        load_bindings(),
        catalog=MAPS,
        entity_filter=mapped_entities(MAPS),
        ordering=lambda event: ordering_key(event, MAPS),
    )
    try:
        return asyncio.run(service.receive(source, body, sent)), queue
    except InvalidNotification as refused:
        return refused, queue


def check(source: Side, body: bytes, sent: dict[str, str]) -> None:
    outcome, queue = ingest(source, body, sent)
    if isinstance(outcome, InvalidNotification):
        reason = str(outcome)
        assert reason and len(reason) < 600, reason[:2000]  # says what is wrong, without echoing the body
        assert queue.events == []
        return
    assert queue.events == outcome.accepted
    for event in queue.events:
        message = to_message(event, 16)  # what goes on the wire
        text = event.model_dump_json()
        text.encode("utf-8")
        assert ChangeEvent.model_validate_json(text) == event
        assert message.message_id == event.event_id and message.session_id


@FUZZ
@given(body=bodies(dataverse_seeds() + fno_seeds()[:2]), sent=headers)
def test_any_dataverse_body_is_queued_well_formed_or_refused_with_a_reason(body: bytes, sent: dict[str, str]) -> None:
    check(Side.DATAVERSE, body, sent)


@FUZZ
@given(body=bodies(fno_seeds() + dataverse_seeds()[:1]), sent=headers)
def test_any_fno_body_is_queued_well_formed_or_refused_with_a_reason(body: bytes, sent: dict[str, str]) -> None:
    check(Side.FNO, body, sent)


@pytest.mark.parametrize(
    ("source", "seed"),
    [(Side.DATAVERSE, seed) for seed in dataverse_seeds()] + [(Side.FNO, seed) for seed in fno_seeds()],
)
def test_the_seeds_themselves_are_understood(source: Side, seed: Any) -> None:
    outcome, _ = ingest(source, dumps(seed).encode(), {})
    assert isinstance(outcome, IngestResult), outcome


# The 500s of the report and their neighbours, kept as plain examples so the reason is pinned too.
def _data_event(**changes: Any) -> bytes:
    document = fno_seeds()[1]
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("source", "body", "words"),
    [
        (Side.FNO, _data_event(MessageName=["OnExternalUpdated"]), "MessageName: expected a message name"),
        (Side.FNO, _data_event(MessageName={"a": 1}), "MessageName"),
        (Side.DATAVERSE, _data_event(MessageName=["Update"]), "MessageName"),
        (Side.FNO, _data_event(PrimaryEntityName=["x"]), "PrimaryEntityName: expected a string"),
        (Side.FNO, _data_event(OperationCreatedOn="/Date(99999999999999999)/"), "OperationCreatedOn"),
        (Side.FNO, _data_event(OperationCreatedOn="/Date(253402300799999+1400)/"), "outside the dates"),
        (Side.FNO, _data_event(OperationCreatedOn="/Date(1506409448000+9999)/"), "outside the dates"),
        (Side.FNO, b'{"BusinessEventId": "x", "BusinessEventId": "y"}', "appears twice"),
        (Side.FNO, b'{"BusinessEventId": NaN}', "NaN is not a JSON number"),
        (Side.FNO, b'{"BusinessEventId": 1e999999999}', "out of range"),
        (Side.FNO, b'{"BusinessEventId": ' + b"9" * 5000 + b"}", "out of range"),
        (Side.FNO, b"[" * 5000 + b"]" * 5000, "nested deeper"),
        (Side.FNO, b'["\\ud800"]', "surrogate"),
        (Side.DATAVERSE, b'{"MessageName": "Update", "\\udfff": 1, "InputParameters": []}', "surrogate"),
        (Side.FNO, b'{"BusinessEventId": ["CustomerCreditLimitChangedBusinessEvent"]}', "BusinessEventId"),
        (
            Side.FNO,
            json.dumps({"BusinessEventId": CREDIT, "CustomerAccount": {"a": 1}}).encode(),
            "key field must be text or a number",
        ),
        (
            Side.FNO,
            json.dumps({"BusinessEventId": CREDIT, "CustomerAccount": "A", "ControlNumber": [1]}).encode(),
            "ControlNumber",
        ),
    ],
)
def test_wrong_types_are_refused_with_what_is_wrong(source: Side, body: bytes, words: str) -> None:
    outcome, queue = ingest(source, body, {})
    assert isinstance(outcome, InvalidNotification), outcome
    assert words in str(outcome) and queue.events == []


def test_a_change_too_big_for_one_message_is_queued_without_its_values_for_a_re_read() -> None:
    big = business_event(CREDIT, 7, CustomerAccount="US-001", Notes="x" * (MAX_CHANGE_BYTES + 1))
    outcome, queue = ingest(Side.FNO, json.dumps(big).encode(), {})
    assert isinstance(outcome, IngestResult)
    (event,) = queue.events
    assert event.reread_required and event.fields == {} and "Notes" in event.changed_fields
    assert event.keys == {"dataAreaId": "usmf", "CustomerAccount": "US-001"}
    assert event.ordering_key == "customers:us-001"  # still travels with the row's other changes
    assert len(event.model_dump_json()) < MAX_CHANGE_BYTES


def test_a_change_too_big_even_without_its_values_is_refused() -> None:
    huge_key = business_event(CREDIT, 7, CustomerAccount="k" * (MAX_CHANGE_BYTES + 1))
    outcome, queue = ingest(Side.FNO, json.dumps(huge_key).encode(), {})
    assert isinstance(outcome, ChangeTooLarge) and "Service Bus message" in str(outcome)
    assert queue.events == [] and outcome.refused == ("body",)


def test_the_other_changes_of_an_array_are_queued_and_the_one_too_big_is_named() -> None:
    array = [
        business_event(CREDIT, 7, CustomerAccount="US-001"),
        business_event(CREDIT, 8, CustomerAccount="k" * (MAX_CHANGE_BYTES + 1)),
        business_event(CREDIT, 9, CustomerAccount="US-002"),
    ]
    outcome, queue = ingest(Side.FNO, json.dumps(array).encode(), {})
    assert isinstance(outcome, ChangeTooLarge) and outcome.refused == ("body[1]",)
    assert str(outcome).startswith("body[1]: the change to") and "the other 2 change(s)" in str(outcome)
    assert [e.keys["CustomerAccount"] for e in queue.events] == ["US-001", "US-002"]
    assert outcome.queued == tuple(e.event_id for e in queue.events)
    # F&O retries the whole POST on the error: the same changes again, under the same ids (duplicates detected).
    again, _ = ingest(Side.FNO, json.dumps(array).encode(), {})
    assert isinstance(again, ChangeTooLarge) and again.queued == outcome.queued
