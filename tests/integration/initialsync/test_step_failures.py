"""A sync step that keeps failing (here: Dataverse unreachable) is redelivered from its checkpoint, and once its
last delivery (the `syncsteps` queue's MaxDeliveryCount) fails the run and its map are marked failed with the
reason — never left "running" for ever after the broker dead-letters the step."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableServiceClient

from local.processes import free_port
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import ConnectorError
from shared.connectors.fno import FnoClient
from shared.connectors.http import NO_RETRY, ODataTransport
from shared.initialsync import service
from shared.initialsync.model import Mode
from shared.initialsync.run import SyncRunner, new_run
from shared.initialsync.store import RunStore
from shared.ledger.tables import Ledger
from shared.maps.loader import load_maps


@pytest.fixture
async def runner(storage_connection_string: str) -> AsyncIterator[SyncRunner]:
    nowhere = f"http://127.0.0.1:{free_port()}/"  # nothing listens: every request fails, retryable
    prefix = f"f{uuid.uuid4().hex[:8]}"
    async with TableServiceClient.from_connection_string(storage_connection_string) as tables:
        dataverse = DataverseClient(ODataTransport(nowhere, StaticToken("t"), retry=NO_RETRY))
        fno = FnoClient(ODataTransport(nowhere, StaticToken("t"), retry=NO_RETRY))
        yield SyncRunner(load_maps(), Ledger(tables, prefix), RunStore(tables, prefix), dataverse, fno)
        await dataverse.close()
        await fno.close()


async def test_a_step_failing_on_every_delivery_fails_its_run_with_the_reason(runner: SyncRunner) -> None:
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    await runner.runs.save(run)
    body = json.dumps({"run_id": run.run_id}).encode()
    for delivery in range(1, service.MAX_DELIVERIES):
        with pytest.raises(ConnectorError):  # redelivered by the broker, from the checkpoint
            await service.run_step(body, delivery, runner)
        saved = await runner.runs.get(run.run_id)
        assert saved is not None and saved.state == "running" and saved.failures == delivery
    await service.run_step(body, service.MAX_DELIVERIES, runner)  # the last delivery: completed, not raised
    failed = await runner.runs.get(run.run_id)
    assert failed is not None and failed.state == "failed"
    assert f"failed {service.MAX_DELIVERIES} times" in failed.message and "connection failed" in failed.message
    report = failed.report()
    assert report["progress"]["companies"]["state"] == "failed" and report["progress"]["companies"]["message"]
    await service.run_step(body, 1, runner)  # a stray redelivery of a given-up run does nothing
    assert (await runner.runs.get(run.run_id)).state == "failed"  # type: ignore[union-attr]
