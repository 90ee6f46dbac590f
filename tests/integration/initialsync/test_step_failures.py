"""A sync step that keeps failing (here: Dataverse unreachable) is redelivered from its checkpoint, and once its
last delivery (the `syncsteps` queue's MaxDeliveryCount) fails the run and its map are marked failed with the
reason — never left "running" for ever after the broker dead-letters the step; nor when the step is lost without a
failure (its host stopped on the last delivery): the status check fails the run, and `rerun-failed` resumes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from azure.data.tables.aio import TableServiceClient

from local.processes import free_port
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import ConnectorError
from shared.connectors.fno import FnoClient
from shared.connectors.http import NO_RETRY, ODataTransport
from shared.initialsync import service
from shared.initialsync.model import Mode, RunState
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


async def test_a_run_whose_step_is_gone_is_failed_by_the_status_check_and_resumed_by_rerun_failed(
    runner: SyncRunner,
) -> None:
    # The host stopped on the step's last delivery: the broker dead-lettered it, the run says "running" for ever.
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    run.state, run.steps = "running", 2
    await runner.runs.save(run)
    assert (await service.report(run.run_id, runner)).state == "running"  # within the lease: alive
    failed = await service.report(run.run_id, runner, lease=timedelta(0))  # past it: no step left
    assert failed.state == "failed" and "no step has run since" in failed.message
    assert "rerun-failed" in failed.message
    saved = await runner.runs.get(run.run_id)
    assert saved is not None and saved.state == "failed" and saved.message == failed.message  # checkpointed
    queued: list[RunState] = []

    async def enqueue(r: RunState) -> None:
        queued.append(r)

    resumed = await service.rerun_failed(run.run_id, runner, enqueue)
    assert resumed.run_id == run.run_id and resumed.state == "queued" and resumed.steps == 4
    assert [r.run_id for r in queued] == [run.run_id]
    # The old step was not lost after all (the app was stopped a long while): arriving now, it is dropped — one chain
    # of steps per run — and the run stays queued for the new step.
    await service.run_step(json.dumps({"run_id": run.run_id, "step": 2}).encode(), 1, runner)
    assert (await runner.runs.get(run.run_id)).state == "queued"  # type: ignore[union-attr]
    body = json.dumps({"run_id": run.run_id, "step": 4}).encode()
    with pytest.raises(ConnectorError):  # the new step runs it from its checkpoint (here: Dataverse unreachable)
        await service.run_step(body, 1, runner)
    assert (await runner.runs.get(run.run_id)).state == "running"  # type: ignore[union-attr]


async def test_the_status_check_never_overwrites_a_step_that_saved_meanwhile(runner: SyncRunner) -> None:
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    run.state = "running"
    await runner.runs.save(run)
    stale = await runner.runs.get(run.run_id)
    assert stale is not None
    await runner.runs.save(run)  # a step checkpoints
    assert not await runner.runs.save_if_unchanged(stale)
    assert (await runner.runs.get(run.run_id)).state == "running"  # type: ignore[union-attr]


async def test_a_step_redelivered_after_counting_its_successor_still_runs(runner: SyncRunner) -> None:
    """The host died after the step counted the next step and before queuing it: the redelivered step is all that
    carries the run on, so it runs (a step two behind, or of a chain before a resume, is dropped)."""
    run = new_run(Mode.SYNC, runner.maps, ["customers"])
    run.state, run.steps = "running", 2
    await runner.runs.save(run)
    with pytest.raises(ConnectorError):  # it runs (here: Dataverse unreachable)
        await service.run_step(json.dumps({"run_id": run.run_id, "step": 1}).encode(), 2, runner)
    await service.run_step(json.dumps({"run_id": run.run_id, "step": 0}).encode(), 2, runner)  # dropped: no error


async def test_a_run_with_rich_samples_is_checkpointed_and_read_back(runner: SyncRunner) -> None:
    """Table Storage refuses a string property over 32K characters (PropertyValueTooLarge; Microsoft Learn,
    "Understanding the Table service data model"): a map's samples of rich rows reached that, and a checkpoint that
    cannot be saved fails its step after its writes landed (review finding 2). Saved in parts, each within bounds,
    and a smaller checkpoint after it leaves no part of the larger behind."""
    run = new_run(Mode.PLAN, runner.maps, ["customers"])
    row = {f"column_{n}": "a realistic value of a customer's address or contact line" for n in range(45)}
    for kind in ("created", "updated", "error"):  # five samples each, as `SyncRunner._count` keeps them
        run.progress["customers"].samples[kind] = [
            {"key": {"dataAreaId": "usmf", "CustomerAccount": f"C{i}"}, "writes": [{"into": "dataverse",
             "values": row}]} for i in range(5)
        ]  # fmt: skip
    await runner.runs.save(run)  # was: HttpResponseError PropertyValueTooLarge
    saved = await runner.runs.get(run.run_id)
    assert saved is not None and saved.progress["customers"].samples == run.progress["customers"].samples
    run.progress["customers"].samples = {}
    assert await runner.runs.save_if_unchanged(saved.model_copy(update={"progress": run.progress}))
    again = await runner.runs.get(run.run_id)
    assert again is not None and again.progress["customers"].samples == {}
    assert [r.run_id for r in await runner.runs.runs()] == [run.run_id]


async def test_rerun_failed_on_a_finished_plan_is_refused_and_a_failed_plan_resumes_as_a_plan(
    runner: SyncRunner,
) -> None:
    """A plan writes nothing, so it has no failed rows: rerun-failed on one must not start a writing sync (review
    finding 8: it answered 202 with mode sync, only_failed). One that failed as a whole resumes — as a plan."""
    plan = new_run(Mode.PLAN, runner.maps, ["customers"])
    plan.state = "done"
    await runner.runs.save(plan)
    with pytest.raises(service.NothingToRerun, match="is a plan"):
        await service.rerun_failed(plan.run_id, runner)
    plan.state = "failed"
    await runner.runs.save(plan)
    queued: list[RunState] = []

    async def enqueue(run: RunState) -> None:
        queued.append(run)

    resumed = await service.rerun_failed(plan.run_id, runner, enqueue)
    assert [r.run_id for r in queued] == [plan.run_id] and resumed.mode is Mode.PLAN and resumed.state == "queued"
