"""Changes still waiting per map, for the console's lag: queued on `changes` and not applied yet, or deferred
(re-scheduled on the bus after throttling or a transient error). Held changes are the ledger's `held` table.

Table `opswaiting`, one partition per map, one row per waiting change: RowKey = the change's time (nanoseconds, so the
partition's first row is its oldest) and its event id. The publisher tells of every change it queues — ingest,
replay, resume — and the rows are written in the background every half second, up to 100 to an entity-group
transaction; the apply observer deletes them once an outcome is final (applied, skipped, conflict, error, held),
batched in its two-second flush (so a row is usually written before its deletion comes). No app request and no Table
round trip on the path of a webhook or of apply.

The publisher and apply may be different instances, so a deletion can come before its row is written: the deletion
then leaves a tombstone (`Done`), and the writer creates rows (never replaces one), so a late write finds the tombstone
and writes nothing. `oldest` skips tombstones and takes them off once past Service Bus's duplicate-detection window.
A change queued again after its outcome here (a webhook retried; duplicate detection drops it, so no outcome will
follow) is not written again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from shared.events.model import ChangeEvent
from shared.ledger.tables import safe_row_key
from shared.ledger.wire import TableRequestFailed, transact
from shared.ops.store import OpsStore

log = logging.getLogger("ops.waiting")
TABLE = "opswaiting"
TRANSACTION_SIZE = 100  # Table Storage's limit per entity-group transaction
MAX_PRUNED = 20  # rows of errored changes taken off per look, at most
MAX_TOMBSTONES = 200  # tombstones taken off per look, at most
# A tombstone is kept past Service Bus's duplicate-detection window (PT10M, infra/servicebus-entities.json): a late
# write of its change, or of a duplicate of it sent within the window, must still find it.
TOMBSTONE_KEPT = timedelta(minutes=15)
QUEUED_FLUSH_SECONDS = 0.5  # well under the observer's FLUSH_SECONDS: a row is written before apply's "done" is
FINISHED_KEPT = 10_000  # outcomes remembered against a row written late (a few seconds' worth at any rate)
MapsFor = Callable[[ChangeEvent], list[str]]
Key = tuple[str, str]  # (map, RowKey)


def waiting_key(map_name: str, event: ChangeEvent) -> Key:
    return map_name, f"{int(event.occurred_at.timestamp() * 1e9):020d}|{safe_row_key(event.event_id)}"


def _entity(key: Key) -> dict[str, Any]:
    """Keys only: the time and the event id are the RowKey (the least for the SDK and the service to carry)."""
    return {"PartitionKey": key[0], "RowKey": key[1]}


def _parse(row_key: str) -> tuple[datetime, str]:
    at, _, event_id = row_key.partition("|")
    return datetime.fromtimestamp(int(at) / 1e9, UTC), event_id


def _by_partition(keys: Iterable[Key]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for partition, row in keys:
        out[partition].append(row)
    return out


class WaitingChanges:
    def __init__(self, store: OpsStore, maps_for: MapsFor, flush_seconds: float = QUEUED_FLUSH_SECONDS) -> None:
        self._store = store
        self._maps_for = maps_for
        self._flush_seconds = flush_seconds
        self._pending: dict[Key, dict[str, Any]] = {}
        self._flusher: asyncio.Task[None] | None = None
        # Changes whose outcome came before their row was written (apply faster than the half-second flush, or during
        # the flush's own write): never written, or deleted right after — else the row would wait for ever.
        self._finished: dict[Key, None] = {}

    def _table(self) -> Any:
        return self._store.table(TABLE)

    def keys_for(self, event: ChangeEvent) -> list[Key]:
        """The rows a change waits under: one per map reading it."""
        return [waiting_key(name, event) for name in self._maps_for(event)]

    async def queued(self, events: Sequence[ChangeEvent]) -> None:
        """A row per change and map reading it, written in the background within `flush_seconds`, many changes to
        a transaction: the send never waits for it. Apply's "done" comes seconds later still (the observer takes
        changes off in its own batches), so the row is there before its deletion. Never raises."""
        try:
            for event in events:
                for name in self._maps_for(event):
                    key = waiting_key(name, event)
                    if key in self._finished:
                        # Finished here already: this is the same change sent again (a webhook retried, F&O's
                        # retries of a POST answered 413 for another change), which duplicate detection drops —
                        # no outcome will come for it, so a row would wait for ever.
                        continue
                    self._pending[key] = _entity(key)
            if self._pending and (self._flusher is None or self._flusher.done()):
                self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        except Exception:
            log.warning("could not record %d queued change(s) for the console's lag", len(events), exc_info=True)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        await self.flush()

    async def flush(self) -> None:
        """Write the rows recorded since the last flush (per map, in transactions of up to 100). Rows are created,
        never replaced: a row there already is a change queued again (fine) or a tombstone left by an apply in
        another instance that finished the change first (kept: the change is not waiting)."""
        pending, self._pending = self._pending, {}
        pending = {k: v for k, v in pending.items() if k not in self._finished}
        if not pending:
            return
        try:
            await self._store.ensure()
            table = self._table()
            for partition, rows in _by_partition(pending).items():
                entities = [pending[(partition, r)] for r in rows]
                for start in range(0, len(entities), TRANSACTION_SIZE):
                    chunk = entities[start : start + TRANSACTION_SIZE]
                    try:
                        await transact(table, [("create", e) for e in chunk])
                    except TableRequestFailed:
                        await asyncio.gather(*(self._create_one(table, e) for e in chunk))
        except Exception:
            log.warning("could not record %d queued change(s) for the console's lag", len(pending), exc_info=True)
        finished_meanwhile = [k for k in pending if k in self._finished]
        if finished_meanwhile:
            await self._delete(finished_meanwhile, tombstone=False)  # written by us just now, or never

    @staticmethod
    async def _create_one(table: Any, entity: dict[str, Any]) -> None:
        try:
            await table.create_entity(entity)
        except ResourceExistsError:
            pass  # the change queued again (waiting already), or a tombstone: finished elsewhere, not waiting

    async def unqueued(self, events: Sequence[ChangeEvent]) -> None:
        """The send failed: nothing of it is waiting (the sender retries, and it is recorded again)."""
        keys = [waiting_key(name, e) for e in events for name in self._maps_for(e)]
        written = [k for k in keys if self._pending.pop(k, None) is None]
        if written:
            await self._delete(written, tombstone=False)  # not finished: the retry of the send records it again

    async def done(self, keys: Iterable[Key]) -> None:
        """Deleted per map in transactions. One not found that was not waiting to be written here (its row not
        written yet by the instance that queued it, or a duplicate delivery's) leaves a tombstone."""
        ours: set[Key] = set()  # still to be written here: never will be (deleted all the same, in case another
        # instance queued the same change — a webhook retried elsewhere — and wrote it)
        others: set[Key] = set()
        for key in set(keys):
            (ours if self._pending.pop(key, None) is not None else others).add(key)
            self._finished[key] = None
        while len(self._finished) > FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]
        if ours:
            await self._delete(ours, tombstone=False)
        if others:
            await self._delete(others, tombstone=True)

    async def _delete(self, keys: Iterable[Key], *, tombstone: bool) -> None:
        table = self._table()
        try:
            await self._store.ensure()
            for partition, rows in _by_partition(set(keys)).items():
                for start in range(0, len(rows), TRANSACTION_SIZE):
                    chunk = rows[start : start + TRANSACTION_SIZE]
                    try:
                        await transact(table, [("delete", {"PartitionKey": partition, "RowKey": r}) for r in chunk])
                    except TableRequestFailed:
                        await asyncio.gather(*(self._delete_one(table, partition, r, tombstone) for r in chunk))
        except Exception:
            log.warning("could not clear applied changes from the console's waiting list", exc_info=True)

    @staticmethod
    async def _delete_one(table: Any, partition: str, row: str, tombstone: bool = False) -> None:
        """`delete_entity` says nothing when the row is not there (the SDK swallows the 404), so a tombstone is
        created first: it lands only where no row is; where one is, the row is deleted."""
        if tombstone:
            try:
                await table.create_entity({"PartitionKey": partition, "RowKey": row, "Done": True})
                return
            except ResourceExistsError:
                pass
        await table.delete_entity(partition, row)

    async def deferred(self, items: Iterable[tuple[Key, ChangeEvent]]) -> None:
        """Re-scheduled: still waiting, marked so. Only a row still there is marked: the retry may already have been
        applied elsewhere, and a row made again here would stay for ever."""
        try:
            await self._store.ensure()
            for key, _event in dict(items).items():
                entity = {"PartitionKey": key[0], "RowKey": key[1], "Deferred": True, "DeferredAt": datetime.now(UTC)}
                try:
                    await self._table().update_entity(entity, mode=UpdateMode.MERGE)
                except ResourceNotFoundError:
                    pass
        except Exception:
            log.warning("could not mark deferred changes for the console's lag", exc_info=True)

    async def oldest(self, map_name: str) -> dict[str, Any] | None:
        """The map's oldest waiting change: its time and whether it was deferred. Taken off on the way: a row whose
        change is in the error log already (it gave up after its retries: an outcome the observer never saw), and
        tombstones no writer claimed."""
        await self._store.ensure()
        pruned = tombstones = 0
        query = self._table().query_entities("PartitionKey eq @m", parameters={"m": map_name}, results_per_page=100)
        now = datetime.now(UTC)
        async for entity in query:
            if entity.get("Done"):
                written_at = getattr(entity, "metadata", {}).get("timestamp")
                old_enough = written_at is None or now - written_at > TOMBSTONE_KEPT
                if old_enough and tombstones < MAX_TOMBSTONES:
                    await self._delete_one(self._table(), map_name, entity["RowKey"])
                    tombstones += 1
                continue
            occurred_at, event_id = _parse(entity["RowKey"])
            if pruned < MAX_PRUNED and event_id and await self._store.error_by_event(map_name, event_id) is not None:
                await self._delete_one(self._table(), map_name, entity["RowKey"])
                pruned += 1
                continue
            return {"occurred_at": occurred_at, "deferred": bool(entity.get("Deferred")), "event_id": event_id}
        return None
