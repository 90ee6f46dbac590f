"""The composition root: the one place the bridge is built — settings, maps, one credential, the Azure clients, the
app connectors, the ledger, the publisher and the services — once per process, and closed when the process stops.

Triggers ask `bridge()` for what they need. Every part is built on first use: a process that only takes webhooks
never needs the apps' URLs, and the credential is made only when a client has no connection string or token.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from azure.core.credentials_async import AsyncTokenCredential

from shared.bus.publisher import ServiceBusChangePublisher
from shared.bus.sender import QueueSender
from shared.clients import Clients
from shared.connectors.wiring import Connectors
from shared.ingest.enums import VirtualTableEnums
from shared.ingest.service import IngestService
from shared.ingest.wiring import build_ingest_service
from shared.initialsync.run import SyncRunner
from shared.initialsync.store import RunStore
from shared.ledger.tables import Ledger
from shared.maps.loader import MAPS_DIR, MapSet, load_maps
from shared.settings import Settings, get_settings
from shared.sync.control import MapControl, MapGate, live_check
from shared.sync.rows import DataverseRows, FnoRows
from shared.sync.service import ApplyService

if TYPE_CHECKING:
    from shared.ops.wiring import OpsParts


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._credential: AsyncTokenCredential | None = None
        self._senders: dict[str, QueueSender] = {}

    def credential(self) -> AsyncTokenCredential:
        """The one azure-identity credential every SDK client and connector shares (managed identity in Azure)."""
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    @cached_property
    def maps(self) -> MapSet:
        return load_maps(sorted(Path(self.settings.maps_dir or MAPS_DIR).glob("*.yaml")))

    @cached_property
    def clients(self) -> Clients:
        return Clients(self.settings, self.credential)

    @cached_property
    def connectors(self) -> Connectors:
        return Connectors(self.settings, self.credential)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.clients.tables)  # creates its tables once, on first use

    @cached_property
    def publisher(self) -> ServiceBusChangePublisher:
        from shared.ops.wiring import queue_watcher  # the console's lag: what is queued per map

        s = self.settings
        return ServiceBusChangePublisher(
            self.clients.servicebus, s.changes_queue, s.enqueue_timeout_seconds, s.session_lanes,
            watcher=queue_watcher(self),
        )  # fmt: skip

    def sender(self, queue: str) -> QueueSender:
        """The process's one sender for `queue` (the bridge's own messages: sync steps)."""
        if queue not in self._senders:
            self._senders[queue] = QueueSender(self.clients.servicebus, queue)
        return self._senders[queue]

    @cached_property
    def control(self) -> MapControl:
        maps, connectors = self.maps, self.connectors
        return MapControl(maps, self.ledger, self.publisher, lambda: live_check(maps, connectors))

    @cached_property
    def ingest(self) -> IngestService:
        # F&O data events' enums are decoded with the virtual tables' options, read through the Dataverse client
        # when first needed (without DATAVERSE_URL the read fails, and the changes are re-read by apply as before).
        enums = VirtualTableEnums(lambda table: self.connectors.dataverse.picklist_definitions(table))
        return build_ingest_service(self.settings, self.maps, self.publisher, enums)

    @cached_property
    def apply(self) -> ApplyService:
        tables = {name: c.map for name, c in self.maps.maps.items()}
        control = self.control
        return ApplyService(
            self.maps, self.ledger, DataverseRows(self.connectors.dataverse, tables), FnoRows(self.connectors.fno),
            before_first=MapGate(lambda: control).ensure, schedule=self.publisher.schedule,
        )  # fmt: skip

    @cached_property
    def sync_runner(self) -> SyncRunner:
        """Initial sync and reconciliation runs (`shared.initialsync`), over the same ledger and app clients."""
        tables = self.clients.tables
        return SyncRunner(self.maps, self.ledger, RunStore(tables), self.connectors.dataverse, self.connectors.fno)

    @cached_property
    def ops(self) -> OpsParts:
        """The console's parts: its store, the waiting list, the observer of apply's outcomes."""
        from shared.ops.wiring import OpsParts

        return OpsParts(self)

    async def close(self) -> None:
        """Close what was opened: apply's grouped writes in flight, the queue senders, the apps' clients, the Azure
        clients, then the credential they shared."""
        if "apply" in self.__dict__:
            await self.apply.write_groups.close()
        for sender in self._senders.values():
            await sender.close()
        self._senders.clear()
        if "connectors" in self.__dict__:
            await self.connectors.close()
        if "clients" in self.__dict__:
            await self.clients.close()
        if self._credential is not None:
            await self._credential.close()
            self._credential = None


_bridge: Bridge | None = None


def bridge() -> Bridge:
    """The process's bridge, built on the first ask (Functions has no start-up hook)."""
    global _bridge
    if _bridge is None:
        _bridge = Bridge(get_settings())
    return _bridge


def current_bridge() -> Bridge | None:
    """The process's bridge if one was built (shutdown must not build one just to close it)."""
    return _bridge


async def close_bridge() -> None:
    """Awaited when the process stops (`function_app.shutdown`)."""
    global _bridge
    if _bridge is not None:
        await _bridge.close()
        _bridge = None
