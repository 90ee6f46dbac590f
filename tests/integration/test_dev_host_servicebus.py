"""The dev host running Service Bus-triggered functions against the local broker, as the Functions host would."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from tests import stack

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("sbhost")
    config = {
        "UserConfig": {
            "Namespaces": [
                {
                    "Name": "sbemulatorns",
                    "Queues": [
                        {"Name": "work", "Properties": {"MaxDeliveryCount": 3, "LockDuration": "PT10S"}},
                        {"Name": "ordered", "Properties": {"RequiresSession": True, "LockDuration": "PT10S"}},
                        {"Name": "batched", "Properties": {"RequiresSession": True, "LockDuration": "PT10S"}},
                    ],
                }
            ]
        }
    }
    (tmp / "Config.json").write_text(json.dumps(config))
    host_json = json.loads((ROOT / "host.json").read_text())
    host_json["extensions"]["serviceBus"].update({"maxConcurrentSessions": 2, "sessionIdleTimeout": "00:00:01"})
    (tmp / "host.json").write_text(json.dumps(host_json))
    record = tmp / "record.jsonl"
    record.touch()
    with stack.broker(tmp / "Config.json") as connection:
        env = {"ServiceBusConnection": connection, "RECORD_FILE": str(record)}
        with stack.dev_host(env, app="tests.fixtures.servicebus_app:app", root=tmp):
            yield connection, record


def _records(path: Path, function: str, until: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["function"] == function]
        if len(rows) >= until or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_a_message_reaches_the_function_with_its_metadata_and_is_completed(running: tuple[str, Path]) -> None:
    connection, record = running
    with ServiceBusClient.from_connection_string(connection) as client:
        with client.get_queue_sender("work") as sender:
            sender.send_messages(
                ServiceBusMessage(
                    '{"hello": "world"}',
                    message_id="evt-1",
                    correlation_id="corr-9",
                    content_type="application/json",
                    subject="customers",
                    application_properties={"source": "fno", "entity": "CustomersV3"},
                )
            )
        (row,) = [r for r in _records(record, "plain", 1) if r["message_id"] == "evt-1"]
        assert row["body"] == '{"hello": "world"}'
        assert row["correlation_id"] == "corr-9" and row["content_type"] == "application/json"
        assert row["delivery_count"] == 1  # 1-based, as the Functions host reports it
        assert row["properties"] == {"source": "fno", "entity": "CustomersV3"}
        assert row["subject"] == "customers"
        assert row["sequence_number"] >= 1 and row["enqueued"]
        time.sleep(0.5)
        with client.get_queue_receiver("work") as receiver:
            assert [m.message_id for m in receiver.peek_messages(max_message_count=10, sequence_number=1)] == []


def test_a_failing_function_is_retried_then_dead_lettered(running: tuple[str, Path]) -> None:
    connection, record = running
    with ServiceBusClient.from_connection_string(connection) as client:
        with client.get_queue_sender("work") as sender:
            sender.send_messages(ServiceBusMessage("fail please", message_id="evt-fail"))
        rows = [r for r in _records(record, "plain", 4) if r["message_id"] == "evt-fail"]
        assert [r["delivery_count"] for r in rows] == [1, 2, 3]  # MaxDeliveryCount 3
        with client.get_queue_receiver("work", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
            (dead,) = dlq.receive_messages(max_wait_time=5)
            assert dead.message_id == "evt-fail" and dead.dead_letter_reason == "MaxDeliveryCountExceeded"
            dlq.complete_message(dead)


def test_sessions_in_order_one_at_a_time_and_different_sessions_in_parallel(running: tuple[str, Path]) -> None:
    connection, record = running
    with ServiceBusClient.from_connection_string(connection) as client, client.get_queue_sender("ordered") as sender:
        sender.send_messages(
            [ServiceBusMessage(f"{sid}-{i}", session_id=sid) for i in range(4) for sid in ("row-a", "row-b")]
        )
    rows = _records(record, "ordered", 8)
    assert len(rows) == 8
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_session.setdefault(r["session"], []).append(r)
    for sid, handled in by_session.items():
        assert [r["body"] for r in handled] == [f"{sid}-{i}" for i in range(4)]
        for earlier, later in itertools.pairwise(handled):
            assert earlier["end"] <= later["start"], "two messages of one session overlapped"
    a, b = by_session["row-a"], by_session["row-b"]
    overlapping = any(x["start"] < y["end"] and y["start"] < x["end"] for x in a for y in b)
    assert overlapping, "different sessions were not handled in parallel"


def test_a_batch_trigger_gets_a_session_s_messages_together_in_order_and_settles_them_as_one(
    running: tuple[str, Path],
) -> None:
    """cardinality many: up to maxMessageBatchSize messages of one session per call, waiting up to maxBatchWaitTime
    for minMessageBatchSize (host.json); an exception abandons the whole batch, which comes back whole."""
    connection, record = running
    with ServiceBusClient.from_connection_string(connection) as client, client.get_queue_sender("batched") as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}", session_id="lane-1") for i in range(6)])
        calls = _records(record, "batched", 1)
        while sum(len(c["bodies"]) for c in calls) < 6:
            calls = _records(record, "batched", len(calls) + 1)
        assert [b for c in calls for b in c["bodies"]] == [f"m{i}" for i in range(6)]
        assert len(calls) < 6 and max(len(c["bodies"]) for c in calls) > 1  # together, not one by one
        before = len(calls)
        sender.send_messages([ServiceBusMessage(b, session_id="lane-2") for b in ("x0", "fail x1", "x2")])
        calls = _records(record, "batched", before + 1)[before:]
        while sum(len(c["bodies"]) for c in calls) < 6:
            calls = _records(record, "batched", before + len(calls) + 1)[before:]
        first, again = calls[0], calls[1:]
        assert first["bodies"] == ["x0", "fail x1", "x2"] and first["delivery_counts"] == [1, 1, 1]
        assert sorted(b for c in again for b in c["bodies"]) == ["fail x1", "x0", "x2"]  # every one came back
        assert all(n == 2 for c in again for n in c["delivery_counts"])
