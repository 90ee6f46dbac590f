from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from azure.data.tables.aio import TableServiceClient

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport
from shared.initialsync.run import SyncRunner
from shared.initialsync.store import RunStore
from shared.ledger.tables import Ledger
from shared.maps.loader import MapSet, load_maps
from tests.integration.sims.conftest import Sim, dv, fo  # noqa: F401  (in-process simulators, one per test)


@contextlib.asynccontextmanager
async def runner_on(
    storage: str, dataverse_sim: Sim, fno_sim: Sim, maps: MapSet | None = None
) -> AsyncIterator[SyncRunner]:
    """A sync runner over the simulators, with a ledger and run store of its own in Azurite."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    dataverse = DataverseClient(
        ODataTransport(dataverse_sim.url + dataverse_sim.simulator.dialect.root, StaticToken("t"))
    )
    fno = FnoClient(ODataTransport(fno_sim.url + fno_sim.simulator.dialect.root, StaticToken("t")))
    async with TableServiceClient.from_connection_string(storage) as tables:
        yield SyncRunner(maps or load_maps(), Ledger(tables, prefix), RunStore(tables, prefix), dataverse, fno)
    await dataverse.close()
    await fno.close()
