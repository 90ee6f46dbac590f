"""Both webhook endpoints, through the real dev host and broker, under mutated notifications: never a 5xx; a refusal
is a 400 problem+json saying what is wrong; what is queued is exactly what was accepted, and well formed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from local.servicebus.config import DEFAULT_CONFIG
from shared.events.model import ChangeEvent
from shared.ingest.service import MAX_CHANGE_BYTES
from tests import stack
from tests.integration.test_webhooks import KEYS, MAX_BYTES, drain
from tests.unit.events.builders import body, business_event
from tests.unit.events.mutations import bodies, dataverse_seeds, fno_seeds, headers

FUZZ = settings(
    max_examples=120,
    derandomize=True,  # the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def bridge(storage_connection_string: str) -> Iterator[tuple[str, str]]:
    with stack.broker(DEFAULT_CONFIG) as sb:
        env = {
            "AzureWebJobsStorage": storage_connection_string,
            "ServiceBusConnection": sb,
            "FUNCTION_KEYS": json.dumps(KEYS),
            "WEBHOOK_MAX_BYTES": str(MAX_BYTES),
            "AzureWebJobs.apply_change.Disabled": "true",  # the queue is read here, after the run
        }
        with stack.dev_host(env) as url:
            yield url, sb


@pytest.mark.parametrize(
    ("path", "key", "seeds"),
    [("dataverse", "dv-key", dataverse_seeds() + fno_seeds()[:1]), ("fno", "fno-key", fno_seeds())],
)
def test_mutated_notifications_never_get_a_5xx_and_only_what_was_accepted_is_queued(
    bridge: tuple[str, str], path: str, key: str, seeds: list[object]
) -> None:
    url, sb = bridge
    accepted: set[str] = set()
    refused = 0
    with httpx.Client(base_url=url, params={"code": key}, timeout=30) as http:

        @FUZZ
        @given(body=bodies(seeds), sent=headers)
        def post(body: bytes, sent: dict[str, str]) -> None:
            nonlocal refused
            r = http.post(f"/api/webhooks/{path}", content=body, headers=sent)
            assert r.status_code < 500, r.text[:2000]
            assert "Traceback" not in r.text
            if r.status_code >= 400:
                assert r.status_code in (400, 413), r.text[:500]
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["detail"]
                accepted.update(r.json().get("event_ids") or [])  # an array's other changes, queued (413)
                refused += 1
            else:
                accepted.update(r.json()["event_ids"])

        post()
    assert refused and accepted  # the mutations reach both outcomes
    queued = drain(sb)
    assert {m.message_id for m in queued} == accepted
    for message in queued:
        event = ChangeEvent.model_validate_json(str(message))
        assert event.event_id == message.message_id


def test_a_change_too_big_for_a_message_is_queued_for_a_re_read_or_refused_with_413(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    credit = "CustomerCreditLimitChangedBusinessEvent"
    big = business_event(credit, 8, CustomerAccount="US-001", Notes="x" * (MAX_CHANGE_BYTES + 1))
    r = httpx.post(f"{url}/api/webhooks/fno", content=body(big), params={"code": "fno-key"}, timeout=30)
    assert r.status_code == 202, r.text[:500]
    (message,) = drain(sb)
    event = ChangeEvent.model_validate_json(str(message))
    assert event.reread_required and event.fields == {}
    huge_key = business_event(credit, 9, CustomerAccount="k" * (MAX_CHANGE_BYTES + 1))
    r = httpx.post(f"{url}/api/webhooks/fno", content=body(huge_key), params={"code": "fno-key"}, timeout=30)
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert "Service Bus message" in r.json()["detail"] and r.json()["refused"] == ["body"]
    assert drain(sb, wait=1) == []


def test_an_arrays_other_changes_are_queued_once_when_one_is_too_big(bridge: tuple[str, str]) -> None:
    url, sb = bridge
    credit = "CustomerCreditLimitChangedBusinessEvent"
    array = [
        business_event(credit, 21, CustomerAccount="US-021"),
        business_event(credit, 22, CustomerAccount="k" * (MAX_CHANGE_BYTES + 1)),
        business_event(credit, 23, CustomerAccount="US-023"),
    ]
    answers = []
    for _ in range(2):  # F&O retries the whole POST on anything but a 2xx
        r = httpx.post(f"{url}/api/webhooks/fno", content=json.dumps(array).encode(), params={"code": "fno-key"},
                       timeout=30)  # fmt: skip
        assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
        answers.append(r.json())
    assert answers[0]["refused"] == ["body[1]"] and "body[1]" in answers[0]["detail"]
    assert answers[0]["event_ids"] == answers[1]["event_ids"] and len(answers[0]["event_ids"]) == 2
    queued = drain(sb)  # the retry's copies dropped by the queue's duplicate detection (message id = event id)
    assert [m.message_id for m in queued] == answers[0]["event_ids"]
