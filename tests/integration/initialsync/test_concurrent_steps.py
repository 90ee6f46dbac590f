"""Two steps of one run at once — a step redelivered after its host died, beside the step that carried the run on —
must not put an older checkpoint back over a newer one: a CI run saw the redelivered step save `running` (1,200 of
1,503 rows) over the run its successor had finished, and the run's chain of steps ended there. Each save is
conditional on the checkpoint the step read or saved last; the step that finds another's save stops."""

from __future__ import annotations

import uuid

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.initialsync.model import Mode
from shared.initialsync.run import new_run
from shared.initialsync.store import RunStore, Superseded
from shared.maps.loader import load_maps


async def test_a_step_that_read_an_older_checkpoint_cannot_save_over_a_newer_one(
    storage_connection_string: str,
) -> None:
    async with TableServiceClient.from_connection_string(storage_connection_string) as service:
        store = RunStore(service, prefix=f"c{uuid.uuid4().hex[:8]}")
        run = new_run(Mode.SYNC, load_maps(), ["customers"])
        await store.save(run)  # started: never read, written as it is
        first, redelivered = await store.get(run.run_id), await store.get(run.run_id)
        assert first is not None and redelivered is not None
        first.state = "done"
        await store.save(first)
        await store.save(first)  # its own saves go on (the ETag follows each save)
        redelivered.state = "running"
        with pytest.raises(Superseded):
            await store.save(redelivered)
        stored = await store.get(run.run_id)
        assert stored is not None and stored.state == "done"
