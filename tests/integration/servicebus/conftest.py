"""One broker for the conformance suite, with a pool of queues of each kind so that every test starts empty."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import stack

KINDS: dict[str, dict[str, object]] = {
    "plain": {"LockDuration": "PT2S", "MaxDeliveryCount": 3, "RequiresDuplicateDetection": False},
    "dedupe": {
        "LockDuration": "PT5S",
        "RequiresDuplicateDetection": True,
        "DuplicateDetectionHistoryTimeWindow": "PT3S",
    },
    "ttl-dlq": {"DefaultMessageTimeToLive": "PT1S", "DeadLetteringOnMessageExpiration": True},
    "ttl-drop": {"DefaultMessageTimeToLive": "PT1S", "DeadLetteringOnMessageExpiration": False},
    "session": {"LockDuration": "PT3S", "MaxDeliveryCount": 3, "RequiresSession": True},
    "renew": {"LockDuration": "PT5S"},
    # Ten messages renewed by ten SDK threads over one pure-Python AMQP link: a longer lock so that a busy 2-core
    # machine (the CI box runs the suite on two workers) delays renewals without letting a lock lapse.
    "renew-many": {"LockDuration": "PT10S"},
}
POOL = 24


@pytest.fixture(scope="session")
def sb_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    queues = [{"Name": f"{kind}-{i}", "Properties": props} for kind, props in KINDS.items() for i in range(POOL)]
    config = {"UserConfig": {"Namespaces": [{"Name": "sbemulatorns", "Queues": queues, "Topics": []}]}}
    path: Path = tmp_path_factory.mktemp("servicebus") / "Config.json"
    path.write_text(json.dumps(config))
    with stack.broker(path) as connection:
        yield connection


_counters = {kind: itertools.count() for kind in KINDS}


@pytest.fixture
def fresh_queue() -> Callable[[str], str]:
    """`fresh_queue("plain")` → a queue of that kind no other test has used."""

    def take(kind: str) -> str:
        n = next(_counters[kind])
        if n >= POOL:
            raise RuntimeError(f"the {kind} queue pool is used up: raise POOL")
        return f"{kind}-{n}"

    return take
