"""Webhooks through the dev host into the local broker: what lands on `changes`, and what never does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.servicebus import NEXT_AVAILABLE_SESSION, ServiceBusClient, ServiceBusReceivedMessage
from azure.servicebus.exceptions import OperationTimeoutError

from local.processes import emulator_connection, free_port
from local.servicebus.config import DEFAULT_CONFIG
from shared.bus.lanes import lane_of
from tests import stack
from tests.unit.events.builders import body, business_event, context, entity

SAMPLE = Path(__file__).parents[1] / "fixtures" / "samples" / "dataverse-webhook-update-contact.json"
KEYS = {"dataverse_webhook": "dv-key", "fno_webhook": "fno-key", "master": "master-key"}
MAX_BYTES = 300_000
ROW = "0f0f0f0f-1111-2222-3333-444455556666"
ACCOUNT = "0a0a0a0a-1111-2222-3333-444455556666"


@pytest.fixture(scope="module")
def bridge(storage_connection_string: str) -> Iterator[tuple[str, str]]:
    with stack.broker(DEFAULT_CONFIG) as sb:
        env = {
            "AzureWebJobsStorage": storage_connection_string,
            "ServiceBusConnection": sb,
            "FUNCTION_KEYS": json.dumps(KEYS),
            "WEBHOOK_MAX_BYTES": str(MAX_BYTES),
            "AzureWebJobs.apply_change.Disabled": "true",  # these tests read the queue themselves
        }
        with stack.dev_host(env) as url:
            yield url, sb


def drain(connection: str, wait: float = 1.5) -> list[ServiceBusReceivedMessage]:
    """Every message on `changes`, session by session, completed."""
    got: list[ServiceBusReceivedMessage] = []
    with ServiceBusClient.from_connection_string(connection, retry_total=0) as client:
        while True:
            try:
                with client.get_queue_receiver("changes", session_id=NEXT_AVAILABLE_SESSION, max_wait_time=wait) as r:
                    if r.session.locked_until_utc is None:
                        return got
                    for message in r:
                        got.append(message)
                        r.complete_message(message)
            except OperationTimeoutError:
                return got


def post(url: str, path: str, content: bytes, key: str | None, headers: dict[str, str] | None = None) -> httpx.Response:
    params = {"code": key} if key else {}
    return httpx.post(f"{url}/api/webhooks/{path}", content=content, params=params, headers=headers or {}, timeout=30)


def test_a_dataverse_webhook_is_queued_with_its_ids_and_body(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    account = entity("account", ACCOUNT, {"name": "Contoso", "accountnumber": "US-001"}, row_version="101")
    r = post(url, "dataverse", body(context("Update", "account", ACCOUNT, account)), "dv-key")
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["accepted"] == 1 and answer["ignored"] == 0
    (event_id,) = answer["event_ids"]
    (message,) = drain(sb)
    assert message.message_id == event_id
    # The lane follows the synced row (customers map, account number): F&O changes to it share the session.
    assert message.session_id == f"lane-{lane_of('customers:us-001', 8):02d}"
    assert message.application_properties == {b"source": b"dataverse", b"entity": b"account", b"operation": b"update"}
    queued = json.loads(str(message))
    assert queued["event_id"] == event_id and queued["schema_version"] == 1
    assert queued["fields"]["name"] == "Contoso" and queued["entity"] == "account"
    assert queued["ordering_key"] == "customers:us-001"


def test_a_table_no_map_reads_is_acknowledged_and_not_queued(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    r = post(url, "dataverse", SAMPLE.read_bytes(), "dv-key", {"Prefer": "return=representation"})
    assert r.status_code == 202
    answer = r.json()
    assert answer["accepted"] == 0 and answer["ignored"] == 1
    assert answer["ignored_events"][0]["reason"] == "no enabled table map reads dataverse contact"
    assert answer["ignored_events"][0]["event"]["fields"]["firstname"] == "James"
    assert drain(sb, wait=1) == []


def test_the_same_notification_twice_is_queued_once(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    notification = body(context("Update", "account", ROW, entity("account", ROW, {"name": "twice"}, row_version="7")))
    first = post(url, "dataverse", notification, "dv-key").json()
    again = post(url, "dataverse", notification, None, {"x-functions-key": "dv-key"}).json()
    assert first["event_ids"] == again["event_ids"]
    assert [m.message_id for m in drain(sb)] == first["event_ids"]


def test_an_fno_array_is_queued_whole_and_representation_shows_what_was_understood(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    events = [
        business_event("SalesOrderConfirmedBusinessEvent", 10, SalesOrderNumber="SO-10"),
        business_event("SalesOrderConfirmedBusinessEvent", 11, SalesOrderNumber="SO-11"),
        business_event("NobodyBindsThis", 12),
    ]
    r = post(url, "fno", body(events), "fno-key", {"Prefer": "return=representation"})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["accepted"] == 2 and answer["ignored"] == 1
    assert [e["keys"]["SalesOrderNumber"] for e in answer["events"]] == ["SO-10", "SO-11"]
    assert "no binding" in answer["ignored_events"][0]["reason"]
    assert sorted(m.message_id for m in drain(sb)) == sorted(answer["event_ids"])


def test_the_fno_endpoint_test_message_answers_200_and_queues_nothing(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    r = post(url, "fno", body(business_event("BusinessEventsTestEndpointContract", 0)), "fno-key")
    assert r.status_code == 200 and r.json()["accepted"] == 0
    assert drain(sb, wait=1) == []


@pytest.mark.parametrize(
    ("path", "content", "key", "status", "words"),
    [
        ("dataverse", SAMPLE.read_bytes(), None, 401, None),
        ("dataverse", SAMPLE.read_bytes(), "wrong", 401, None),
        ("dataverse", SAMPLE.read_bytes(), "fno-key", 401, None),  # one source's key does not open the other door
        ("fno", SAMPLE.read_bytes(), "dv-key", 401, None),
        ("dataverse", b"{not json", "dv-key", 400, "malformed JSON"),
        ("dataverse", b'{"hello": 1}', "dv-key", 400, "RemoteExecutionContext"),
        (
            "dataverse",
            body({"MessageName": "Update", "PrimaryEntityName": "account", "InputParameters": []}),
            "dv-key",
            400,
            "Target",
        ),
        (
            "dataverse",
            body(context("Update", "account", ROW, entity("account", ROW, {}))).replace(
                b"/Date(1506409448000-0700)/", b"/Date(never)/"
            ),
            "dv-key",
            400,
            "OperationCreatedOn",
        ),
        ("fno", b"[]", "fno-key", 400, "empty array"),
        ("fno", b'{"x": 1}', "fno-key", 400, "neither"),
        ("dataverse", b"x" * (MAX_BYTES + 1), "dv-key", 413, "WEBHOOK_MAX_BYTES"),
    ],
)
def test_bad_input_gets_its_status_and_nothing_is_queued(
    bridge: tuple[str, str], path: str, content: bytes, key: str | None, status: int, words: str | None
) -> None:
    url, sb = bridge
    r = post(url, path, content, key)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status
    if words:
        assert words in problem["detail"]
    assert "Traceback" not in r.text and "dv-key" not in r.text
    assert drain(sb, wait=1) == []


def test_with_the_bus_down_the_answer_is_503_with_retry_after(storage_connection_string: str) -> None:
    dead = emulator_connection(free_port())  # nothing listens there
    env = {
        "AzureWebJobsStorage": storage_connection_string,
        "ServiceBusConnection": dead,
        "FUNCTION_KEYS": json.dumps(KEYS),
        "ENQUEUE_TIMEOUT_SECONDS": "2",
    }
    account = entity("account", ACCOUNT, {"name": "Contoso"}, row_version="5")
    with stack.dev_host(env) as url:
        r = post(url, "dataverse", body(context("Update", "account", ACCOUNT, account)), "dv-key")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert r.headers["content-type"].startswith("application/problem+json")
