"""The process's one sync runner, built from the app settings (as apply's wiring is)."""

from __future__ import annotations

from shared.clients import get_clients
from shared.connectors.wiring import get_connectors
from shared.initialsync.run import SyncRunner
from shared.initialsync.store import RunStore
from shared.ledger.tables import Ledger
from shared.wiring import get_maps

_runner: SyncRunner | None = None


def get_runner() -> SyncRunner:
    global _runner
    if _runner is None:
        connectors = get_connectors()
        tables = get_clients().tables
        _runner = SyncRunner(get_maps(), Ledger(tables), RunStore(tables), connectors.dataverse, connectors.fno)
    return _runner
