"""The azure-servicebus SDK's own queue samples (7.15.0, sync and async, vendored in tests/fixtures) against the broker.

Each runs as its own process with the environment variables the samples read, all at once, and must exit 0 within
SAMPLE_BOUND_SECONDS. Samples that need what the local broker does not offer are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from tests import stack

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "servicebus_samples"
RUNNER = SAMPLES / "run_sample.py"
# A hang detector, not a speed test: the session-pool samples end with the SDK's own retry backoff on an empty
# queue (5 receivers x 4 next-available attempts, ~25 s idle alone), which a loaded 2-core machine stretches past 45 s.
SAMPLE_BOUND_SECONDS = 120
PARALLEL = 8
# Samples that receive until they are stopped (an iterator without max_wait_time), as they would on Service Bus:
# given messages to receive, they must take and complete them all and still be running, unharmed, at this bound.
ENDLESS = {
    "sync_samples/receive_iterator_queue",
    "async_samples/receive_iterator_queue_async",
    "sync_samples/failure_and_recovery",
}
ENDLESS_BOUND_SECONDS = 12
SEEDED = [f"seeded message {i}" for i in range(5)]

TOPICS = "needs topics and subscriptions, which the local broker does not have"
AAD = "needs Azure AD (Entra ID) credentials, which the local broker cannot check"
PROXY = "needs a proxy or custom endpoint with its CA bundle (placeholders in the sample)"
ADMIN = "needs the HTTP management API (ServiceBusAdministrationClient), which the local broker does not serve"
SKIPPED = {
    "client_identity_authentication": AAD,
    "connection_to_custom_endpoint_address": PROXY,
    "proxy": PROXY,
    "list_sessions": TOPICS,  # lists subscription sessions too
    "auto_lock_renew_async": TOPICS,  # renews on a subscription receiver too (the sync one runs)
    "sample_code_servicebus": TOPICS,
    "send_topic": TOPICS,
    "receive_subscription": TOPICS,
    "schedule_topic_messages_and_cancellation": TOPICS,
    "topic_subscription_with_rule_operations": TOPICS,
    "mgmt_queue": ADMIN,
    "mgmt_topic": ADMIN,
    "mgmt_subscription": ADMIN,
    "mgmt_rule": ADMIN,
}


def _runnable() -> list[Path]:
    return sorted(SAMPLES.glob("*_samples/*.py"))


def _skipped() -> list[str]:
    """The SDK's samples not vendored, by the name they have in its sdist (the async ones end in `_async`)."""
    names = []
    for name in SKIPPED:
        if name.endswith("_async"):
            names.append(f"async_samples/{name}")
        else:
            names += [f"sync_samples/{name}", f"async_samples/{name}_async"]
    return names


@dataclass
class Outcome:
    returncode: int | None  # None: still running at its bound, and killed
    seconds: float
    output: str
    left_in_queue: int | None = None  # endless samples: messages still in their queue afterwards


def _queue(sample: Path) -> str:
    return sample.stem.replace("_", "-")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    samples = _runnable()
    # Locks shorter than the samples' (capped) sleeps, so that their lock renewers have work to do.
    plain = {"LockDuration": "PT5S", "MaxDeliveryCount": 10}
    queues = [{"Name": _queue(s), "Properties": plain} for s in samples]
    queues += [{"Name": f"{_queue(s)}-sessions", "Properties": {**plain, "RequiresSession": True}} for s in samples]
    config = {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues, "Topics": []}]}}
    path: Path = tmp_path_factory.mktemp("samples") / "Config.json"
    path.write_text(json.dumps(config))
    with stack.broker(path) as connection:
        namespace = connection.split(";")[0].removeprefix("Endpoint=sb://")

        def run(sample: Path) -> tuple[str, Outcome]:
            env = {
                **os.environ,
                "SERVICEBUS_CONNECTION_STR": connection,
                "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": namespace,
                "SERVICEBUS_QUEUE_NAME": _queue(sample),
                "SERVICEBUS_SESSION_QUEUE_NAME": f"{_queue(sample)}-sessions",
                "SERVICEBUS_SESSION_ID": "sample-session",
                "SERVICEBUS_SAS_POLICY": "RootManageSharedAccessKey",
                "SERVICEBUS_SAS_KEY": "SAS_KEY_VALUE",
                "PYTHONUNBUFFERED": "1",  # an endless sample is killed: what it printed must be there
            }
            key = f"{sample.parent.name}/{sample.stem}"
            if key in ENDLESS:
                with (
                    ServiceBusClient.from_connection_string(connection) as client,
                    client.get_queue_sender(_queue(sample)) as sender,
                ):
                    sender.send_messages([ServiceBusMessage(body) for body in SEEDED])
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [sys.executable, str(RUNNER), str(sample)],
                    env=env,
                    capture_output=True,
                    timeout=ENDLESS_BOUND_SECONDS if key in ENDLESS else SAMPLE_BOUND_SECONDS,
                    check=False,
                )
                code, output = done.returncode, done.stdout + done.stderr
            except subprocess.TimeoutExpired as exc:  # subprocess.run kills the sample before raising
                code, output = None, (exc.stdout or b"") + (exc.stderr or b"")
            left = None
            if key in ENDLESS:
                with (
                    ServiceBusClient.from_connection_string(connection) as client,
                    client.get_queue_receiver(_queue(sample)) as receiver,
                ):
                    left = len(receiver.peek_messages(max_message_count=100))
            return key, Outcome(code, time.monotonic() - started, output.decode(errors="replace"), left)

        # The longest first (two to three times the rest: 200 single sends, or receive loops of 5 s waits).
        slow = ("session_pool", "deadletter", "auto_lock", "amqp_annotated")
        ordered = sorted(samples, key=lambda s: not any(word in s.stem for word in slow))
        with ThreadPoolExecutor(PARALLEL) as pool:
            yield dict(pool.map(run, ordered))


@pytest.mark.parametrize("sample", [f"{p.parent.name}/{p.stem}" for p in _runnable()])
def test_sample_runs_clean_against_the_broker(sample: str, outcomes: dict[str, Outcome]) -> None:
    outcome = outcomes[sample]
    tail = "\n".join(outcome.output.splitlines()[-25:])
    if sample in ENDLESS:
        assert outcome.returncode is None, f"{sample} stopped ({outcome.returncode}), it should receive on:\n{tail}"
        assert "Traceback" not in outcome.output, tail
        if "failure_and_recovery" not in sample:  # that one sends and receives its own ten messages
            assert all(body in outcome.output for body in SEEDED), tail
        assert outcome.left_in_queue == 0, f"{sample} left {outcome.left_in_queue} messages:\n{tail}"
        return
    assert outcome.returncode is not None, f"{sample} still running after {SAMPLE_BOUND_SECONDS} s:\n{tail}"
    assert outcome.returncode == 0, f"{sample} exited {outcome.returncode} after {outcome.seconds:.1f} s:\n{tail}"


@pytest.mark.parametrize("sample", _skipped())
def test_sample_needing_what_the_broker_lacks(sample: str) -> None:
    name = sample.split("/")[1]
    pytest.skip(f"{sample}: {SKIPPED.get(name) or SKIPPED[name.removesuffix('_async')]}")
