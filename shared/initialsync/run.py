"""A sync run: per map, in dependency order, read both sides, plan (pure), save the ledger entries, write in bulk,
record errors, conflicts and drift, checkpoint the counts after every chunk.

Resumable and idempotent by construction: a run that stopped (a crash, a redeploy) is run again from its checkpoint —
maps already done are skipped, the current map is read again, and whatever it had already written now compares
equal (linked or unchanged: no write). Rows it creates in Dataverse get ids derived from their key, so even a write
whose answer was lost is not repeated as a duplicate. Ledger entries are saved *before* the writes, with the values
about to be written, so the F&O data events those writes raise are recognised by apply as echoes (Dataverse writes
carry `?tag=bridge:sync:…`, skipped by tag); an entry changed meanwhile by live sync is not overwritten (ETag) and
its row is left to live sync.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import ConnectorError
from shared.connectors.fno import FnoClient
from shared.initialsync import io
from shared.initialsync.checkpoint import MESSAGE_CHARS, brief
from shared.initialsync.delta import narrow
from shared.initialsync.heap import FrozenHeap
from shared.initialsync.model import DriftRecord, MapProgress, Mode, RunState
from shared.initialsync.plan import Decision, Kind, decide, integration_key, match, same_difference
from shared.initialsync.store import RunStore, Superseded
from shared.ledger.bulk import delete_many, load_map, save_many
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry, key_text
from shared.ledger.tables import HOLDING_STATES, Ledger, safe_row_key
from shared.maps.loader import MapSet
from shared.maps.model import Side
from shared.sync.decide import normalize

CHUNK = int(os.environ.get("SYNC_CHUNK_ROWS") or 2_000)  # decisions written (and checkpointed) together
# Chunks in flight at once (each saving its ledger entries, then writing): enough that the table service, both apps
# and the host's own CPU are all busy; a crash repeats at most these, without a duplicate (see `in_flight`).
PIPELINE = int(os.environ.get("SYNC_PIPELINE_CHUNKS") or 3)
LEDGER_RANGE = 500  # keys per range the ledger is read in (a Table Storage page is up to 1,000 entities)
SAMPLES = 5
# A step starts no chunk past this many seconds from its start (up to PIPELINE chunks then finish): the Service Bus
# trigger renews the step's message lock for 5 minutes at most (host.json `maxAutoLockRenewalDuration`), after which
# the broker redelivers the step while it still runs — two copies of one step at once.
STEP_LIMIT = float(os.environ.get("SYNC_STEP_LIMIT_SECONDS") or 240)
log = logging.getLogger("sync.initial")


class ChunkFailed(Exception):
    """A chunk's write failed part-way (`cause`): `unsent` are its decisions in the `$batch`es that raised. The
    others were written (or failed, answered, and were recorded): their ledger entries stay."""

    def __init__(self, cause: Exception, unsent: list[Decision]) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.unsent = unsent


def error_id(map_name: str, key: dict[str, Any]) -> str:
    """The error log's id of a row a run could not write: one per row, so a rerun replaces it."""
    return f"sync:{map_name}:{key_text(key)}"


def write_deadline(started: float, now: float, budget: float, limit: float = STEP_LIMIT) -> float:
    """When a step, having read and planned a map by `now`, starts no further chunk: at its budget, or half a budget
    from now when reading and planning spent most of it (else a large map would advance one chunk per step) — but
    never later than `limit` from the step's start. (A step still writes at least one chunk, whatever the time.)"""
    return min(max(started + budget, now + budget / 2), started + limit)


def new_run(mode: Mode, maps: MapSet, names: Sequence[str] | None = None, only_failed: bool = False) -> RunState:
    """A run over `names` and the maps they depend on (default: every enabled map), in dependency order, so the
    rows a lookup references exist before the rows referencing them."""
    wanted = set(names) if names else {c.map.name for c in maps.enabled()}
    unknown = wanted - set(maps.maps)
    if unknown:
        raise ValueError(f"no map named {', '.join(sorted(unknown))}")
    todo = list(wanted)
    while todo:
        m = maps.maps[todo.pop()].map
        for dependency in [*m.depends_on, *(f.lookup for f in m.fields if f.lookup)]:
            if (
                dependency
                and dependency in maps.maps
                and dependency not in wanted
                and maps.maps[dependency].map.enabled
            ):
                wanted.add(dependency)
                todo.append(dependency)
    order = [n for n in maps.order if n in wanted]
    run = RunState(run_id=uuid.uuid4().hex[:16], mode=mode, maps=order, only_failed=only_failed)
    run.progress = {n: MapProgress(map=n) for n in order}
    return run


class SyncRunner:
    def __init__(
        self, maps: MapSet, ledger: Ledger, runs: RunStore, dataverse: DataverseClient, fno: FnoClient
    ) -> None:
        self.maps = maps
        self.ledger = ledger
        self.runs = runs
        self.dataverse = dataverse
        self.fno = fno

    async def run(
        self, run: RunState, progress: Callable[[RunState], None] | None = None, budget_seconds: float | None = None
    ) -> RunState:
        """Run (or continue) `run` from its checkpoint. With a budget, stop after the chunk that spends it and leave
        the run `running` (the caller queues the next step): no step holds a function for long."""
        run.state = "running"
        await self.runs.save(run)
        started = time.monotonic()
        try:
            for name in run.maps:
                if run.progress[name].state == "done":
                    continue  # done by an earlier step
                if not await self._map(run, name, progress, started, budget_seconds):
                    return run  # out of time: the next step continues from the cursor
        except Superseded:
            raise  # another step of the run carries it: nothing of this one's is saved
        except ConnectorError as exc:
            # Throttled, timed out, unreachable: the step is retried (its message redelivered) from the checkpoint.
            run.message = f"retrying after {type(exc).__name__}: {exc}"
            if not exc.retryable:
                run.state = "failed"
            await self.runs.save(run)
            raise
        except Exception as exc:
            run.state, run.message = "failed", f"{type(exc).__name__}: {exc}"
            await self.runs.save(run)
            raise
        held = [p.map for p in run.progress.values() if p.state == "held"]
        run.state = "held" if held else "done"
        if held:
            run.message = (f"held: {', '.join(held)} (see each map's message); nothing was written into them — once"
                           f" resumed, POST /api/sync/{run.run_id}/rerun-failed carries the run on")  # fmt: skip
        await self.runs.save(run)
        return run

    async def _map(
        self,
        run: RunState,
        name: str,
        progress: Callable[[RunState], None] | None,
        started: float,
        budget: float | None = None,
    ) -> bool:
        """One map from its cursor; False when the deadline came first."""
        heap = FrozenHeap()
        try:
            return await self._map_rows(run, name, progress, started, budget, heap)
        finally:
            heap.thaw()

    async def _map_rows(
        self,
        run: RunState,
        name: str,
        progress: Callable[[RunState], None] | None,
        started: float,
        budget: float | None,
        heap: FrozenHeap,
    ) -> bool:
        compiled = self.maps.maps[name]
        m = compiled.map
        state = run.progress[name]
        if run.mode is not Mode.PLAN and (why := await self._held(run, name)):
            state.state, state.message = "held", why  # as live sync holds a paused map's changes
            await self.runs.save(run)
            return True
        state.state, state.finished_at = "reading", None
        state.started_at = state.started_at or datetime.now(UTC)
        await self.runs.save(run)
        clock = time.monotonic()
        lookups = await io.gather_lookups(self.dataverse, self.ledger, compiled, self.maps.maps)
        companies = await io.companies_in_scope(self.fno, lookups, compiled, self.maps.maps)
        # Both apps at once: two services working instead of one after the other.
        tracked = None
        if run.mode is Mode.RECONCILE:  # Dataverse with change tracking: after the first check, what changed since
            fno_rows, tracked = await asyncio.gather(
                io.read_fno(self.fno, m, companies),
                io.read_dataverse_tracked(self.dataverse, m, await self._since(name)),
            )
            dataverse_rows = tracked.rows
            state.delta_link = state.delta_link or tracked.delta_link  # as of the run's first read of the map
            state.compared = "full" if tracked.whole else "changes"
        else:
            fno_rows, dataverse_rows = await asyncio.gather(
                io.read_fno(self.fno, m, companies), io.read_dataverse(self.dataverse, m)
            )
        read_s, clock = time.monotonic() - clock, time.monotonic()
        fno_read = len(fno_rows)
        if state.cursor is not None:  # a continued step: keys up to the cursor are done
            cursor = state.cursor
            fno_rows = [r for r in fno_rows if key_text(integration_key(m, r.record) or {}) > cursor]
        # The ledger in key ranges of about a page each, cut at a sample of the keys read, read in parallel.
        sample = (integration_key(m, r.record) for r in fno_rows[LEDGER_RANGE // 2 :: LEDGER_RANGE])
        entries, index = await load_map(self.ledger, name, state.cursor, [key_text(k) for k in sample if k])
        if tracked is not None and not tracked.whole:
            narrowed = narrow(compiled, self.maps.maps, fno_rows, tracked.rows, tracked.deleted, entries, index,
                              lookups)  # fmt: skip
            counterparts = await io.read_dataverse_ids(self.dataverse, m, narrowed.wanted)
            fno_rows, dataverse_rows = narrowed.fno_rows, narrowed.dataverse_rows + counterparts
            if narrowed.deleted:
                log.info("%s: %d linked rows deleted in Dataverse since the last check", name,
                         narrowed.deleted)  # fmt: skip
        ledger_s, clock = time.monotonic() - clock, time.monotonic()
        # In a thread: matching and deciding are seconds of CPU on a large map, and the host's loop keeps serving
        # webhooks (and this run's writes) meanwhile. Keys are decided chunk by chunk, ahead of the writes.
        pairs, unkeyed = await asyncio.to_thread(
            match, compiled, self.maps.maps, fno_rows, dataverse_rows, entries, index, lookups
        )
        texts = sorted(pairs)
        heap.freeze()  # the rows read, the ledger and the pairs live until the map is done: see heap.py
        if state.cursor is not None:  # keys up to the cursor were done by an earlier step (a Dataverse row's too)
            texts = texts[bisect.bisect_right(texts, state.cursor) :]
        log.info("%s: read %d + %d rows in %.2f s, the ledger (%d) in %.2f s, matched in %.2f s", name,
                 len(fno_rows), len(dataverse_rows), read_s, len(entries), ledger_s,
                 time.monotonic() - clock)  # fmt: skip
        failed: set[str] | None = None
        if run.only_failed:
            unresolved = await self.ledger.errors(name, unresolved=True)  # a dismissed row is not rerun
            failed = {e.event_id for e in unresolved if e.event_id.startswith("sync:")}
        if state.cursor is not None:  # keys up to the cursor were done by an earlier step (and its unkeyed rows)
            unkeyed = []
        state.state = "writing"
        state.fno.read, state.dataverse.read = max(state.fno.read, fno_read), max(state.dataverse.read,
                                                                                  len(dataverse_rows))  # fmt: skip
        state.planned = state.processed + len(unkeyed) + len(texts)
        await self.runs.save(run)
        writer = io.Writer(self.dataverse, self.fno, self.maps.maps, f"{io.TAG_PREFIX}sync:{run.run_id}")
        plan_only = run.mode is Mode.PLAN
        deadline = write_deadline(started, time.monotonic(), budget) if budget is not None else None

        unfinished = list(state.in_flight)  # an earlier step's chunks, begun and not finished
        mine: list[tuple[str, str, str]] = []  # this step's

        def suspect(text: str) -> set[str]:  # the marks of the unfinished chunks holding the key
            return {mark for first, last, mark in unfinished if first <= text <= last}

        def chunk_of(start: int, mark: str) -> list[Decision]:
            decisions = decide(compiled, self.maps.maps, pairs, texts[start : start + CHUNK], entries, lookups,
                               run.run_id, suspect if unfinished else None)  # fmt: skip
            for d in decisions:  # the entries this chunk saves carry its mark (see `MapProgress.in_flight`)
                if d.entry is not None:
                    d.entry.sync_chunk = mark
            if start == 0:
                decisions = unkeyed + decisions
            if failed is not None:
                decisions = [d for d in decisions if error_id(name, d.key) in failed]
            if state.cursor is not None:  # keys up to the cursor were done by an earlier step
                decisions = [d for d in decisions if d.keyed and d.key_text > state.cursor]
            return decisions

        # Pipelined: up to PIPELINE chunks at once, each saving its ledger entries and then writing into the apps
        # (a chunk is written only after its own entries are saved, so its echoes are recognised), while the next
        # chunk is decided; chunks are counted and the cursor moved in key order, only past chunks written.
        starts = range(0, len(texts) or (1 if unkeyed else 0), CHUNK)
        # (chunk, its last key: the cursor passes it once the chunk is done, even if nothing in it was left to do)
        flight: collections.deque[tuple[list[Decision], str | None, asyncio.Task[None]]] = collections.deque()
        begun, worked = 0, False
        while True:
            # A plan writes nothing (its chunks only count); see `write_deadline` for when a step stops writing (it
            # still writes one chunk with work in it, whatever the time).
            out_of_time = deadline is not None and time.monotonic() > deadline and worked and not plan_only
            if begun < len(starts) and not out_of_time and len(flight) < PIPELINE:
                start = starts[begun]
                mark = uuid.uuid4().hex[:12]
                chunk = await asyncio.to_thread(chunk_of, start, mark)
                last = texts[min(start + CHUNK, len(texts)) - 1] if texts else None
                if not plan_only and last is not None and any(d.entry is not None for d in chunk):
                    state.in_flight.append((texts[start], last, mark))  # before its entries are saved: `in_flight`
                    mine.append((texts[start], last, mark))
                    await self.runs.save(run)
                flight.append((chunk, last, asyncio.ensure_future(self._chunk(run, state, chunk, entries, writer))))
                begun, worked = begun + 1, worked or bool(chunk)
                continue
            if not flight:
                break
            chunk, last, task = flight[0]
            await asyncio.wait([task])
            failure = task.exception()
            if failure is not None:
                # Every chunk in flight settles first: a save or write left running would land after the step
                # failed. The chunks that did not finish go back to what their entries were, or the redelivered
                # step would read "the target changed, the source not" and copy the target's stale value back.
                await asyncio.wait([t for _, _, t in flight])
                if await self._unsave([d for c, _, t in flight for d in self._unsettled(c, t)], entries):
                    # Put back (or written and consistent): this step's chunks are not suspect to the next one.
                    state.in_flight = [r for r in state.in_flight if r not in mine]
                with contextlib.suppress(Exception):  # the step's failure is what to report
                    await self.runs.save(run)
                raise failure.cause if isinstance(failure, ChunkFailed) else failure
            flight.popleft()
            for d in chunk:
                self._count(state, d)
            state.processed += len(chunk)
            done = [d.key_text for d in chunk if d.keyed] + ([last] if last is not None else [])
            state.cursor = max([*done, *([state.cursor] if state.cursor is not None else [])], default=None)
            if state.cursor is not None:
                cursor = state.cursor
                state.in_flight = [r for r in state.in_flight if r[1] > cursor]  # finished: no longer suspect
            await self.runs.save(run)
            if progress is not None:
                progress(run)
        if begun < len(starts):
            return False  # out of time: the next step continues from the cursor
        state.planned = state.processed
        if run.mode is Mode.RECONCILE and state.delta_link:
            await self.runs.save_delta_link(name, state.delta_link)  # the next check reads what changed since
        state.state, state.finished_at = "done", datetime.now(UTC)
        await self.runs.save(run)
        if progress is not None:
            progress(run)
        return True

    @staticmethod
    def _unsettled(chunk: list[Decision], task: asyncio.Task[None]) -> list[Decision]:
        """The decisions of a chunk whose ledger entries must be put back: none of a chunk that finished; of one
        whose write failed part-way, those of the batches without an answer (`ChunkFailed`; the rest landed, or
        failed and were put back already); else all of them (a save or an encoding failed: nothing was sent)."""
        failure = task.exception()
        if failure is None:
            return []
        return failure.unsent if isinstance(failure, ChunkFailed) else chunk

    async def _held(self, run: RunState, name: str) -> str | None:
        """Why a run writes nothing into `name` now (None: it may): the map is paused or invalid — README, "Held?" —
        or a map it depends on is held in this run (its rows would fail for want of the referenced rows)."""
        state = await self.ledger.map_state(name)
        if state["state"] in HOLDING_STATES:
            reason = f": {state['reason']}" if state.get("reason") else ""
            return f"the map is {state['state']}{reason}; nothing written into it (resume it, then rerun)"
        m = self.maps.maps[name].map
        for dependency in [*m.depends_on, *(f.lookup for f in m.fields if f.lookup)]:
            if dependency and dependency in run.progress and run.progress[dependency].state == "held":
                return f"waits for {dependency}, held; nothing written into it"
        return None

    async def _since(self, name: str) -> str | None:
        """The delta link the map's last reconciliation left; None (compare every row) when there is none, or when
        rows of the map are in the error log (a row that failed is compared until it is brought over)."""
        if any(e.event_id.startswith("sync:") for e in await self.ledger.errors(name, unresolved=True)):
            return None
        return await self.runs.delta_link(name)

    async def _save(self, run: RunState, state: MapProgress, chunk: list[Decision]) -> None:
        """A chunk's ledger entries, saved before its writes; an entry live sync changed meanwhile is refused and
        its row left to live sync."""
        if run.mode is Mode.PLAN:
            return
        clock = time.monotonic()
        saved = await save_many(self.ledger, [d.entry for d in chunk if d.entry is not None])
        log.info("%s: %d ledger entries saved in %.2f s", state.map, len(saved.saved), time.monotonic() - clock)
        refused = {key_text(e.key) for e in saved.refused}
        for d in chunk:
            if d.key_text in refused:  # changed by live sync since the run read it: live sync has it
                d.kind, d.writes, d.conflict, d.detail = Kind.SKIPPED, [], None, "changed by live sync meanwhile"

    async def _unsave(self, chunk: list[Decision], before: dict[str, LedgerEntry]) -> bool:
        """Undo the ledger entries saved for `chunk` (a save changed an entry's Table ETag; a refused one kept it):
        an entry new to the run is deleted, one that replaced an older is put back, ETag-conditionally (an entry
        live sync changed since is its own). The ledger never records as synced a value the app did not get.
        False when they could not all be put back: their chunks stay in flight (suspect) for the next step."""
        saved = [
            (d.key_text, d.entry)
            for d in chunk
            if d.entry is not None and d.entry.etag != (old.etag if (old := before.get(d.key_text)) else None)
        ]
        try:
            await delete_many(self.ledger, [e for k, e in saved if k not in before])
            restored = [before[k].model_copy(update={"etag": e.etag, "indexed": e.indexed}) for k, e in saved
                        if k in before]  # fmt: skip
            await save_many(self.ledger, restored)  # (one refused: live sync saved it since — its own now)
        except Exception:  # the step fails (and is redelivered) anyway: log it, raise the cause
            log.exception("%d ledger entries of a failed chunk could not be restored", len(saved))
            return False
        return True

    async def _chunk(
        self, run: RunState, state: MapProgress, chunk: list[Decision], before: dict[str, LedgerEntry],
        writer: io.Writer,
    ) -> None:  # fmt: skip
        """One chunk: its ledger entries saved, then its writes (counted when the chunk is committed, in order)."""
        await self._save(run, state, chunk)
        await self._write(run, state, chunk, before, writer)

    async def _write(
        self, run: RunState, state: MapProgress, chunk: list[Decision], before: dict[str, LedgerEntry],
        writer: io.Writer,
    ) -> None:  # fmt: skip
        name = state.map
        m = self.maps.maps[name].map
        writing = run.mode is not Mode.PLAN
        errors: list[tuple[Decision, str, str, int | None]] = []
        unsent: list[Decision] = []
        cause: Exception | None = None
        if writing:
            started = time.monotonic()
            try:
                failures = await writer.write(m, [d for d in chunk if d.writes])
            except io.PartlyWritten as exc:  # the decisions of the batches that did land stay written (below)
                failures, unsent, cause = exc.failures, exc.unsent, exc.cause
                sent = {id(d) for d in unsent}
                chunk = [d for d in chunk if id(d) not in sent]
            log.info("%s: %d decisions written in %.2f s", name, len(chunk), time.monotonic() - started)
            failed = {id(f.decision): f for f in failures}
            restore_new = [d.entry for d in chunk if id(d) in failed and d.entry is not None and
                           d.key_text not in before]  # fmt: skip
            await delete_many(self.ledger, [e for e in restore_new if e is not None])
            restore_old = []
            for d in chunk:
                f = failed.get(id(d))
                if f is None:
                    continue
                old = before.get(d.key_text)
                if old is not None and d.entry is not None:
                    restore_old.append(old.model_copy(update={"etag": d.entry.etag, "indexed": d.entry.indexed}))
                if f.concurrent:
                    d.kind, d.writes, d.conflict = Kind.SKIPPED, [], None
                    d.detail = "changed by live sync meanwhile (412)"
                    continue
                errors.append((d, f.request, f.message, f.status))
                d.kind, d.error_side = Kind.ERROR, f.write.into.other
            await save_many(self.ledger, restore_old)
        if not writing:
            return
        for d in chunk:
            if d.kind is Kind.ERROR and d.error and not any(e[0] is d for e in errors):
                errors.append((d, f"map {name}", d.error, None))
        for d, request, message, status in errors:
            into = str(d.error_side.other) if d.error_side else ""
            await self.ledger.record_error(ErrorRecord(
                map=name, event_id=error_id(name, d.key), event={"key": d.key, "run_id": run.run_id, "into": into},
                request=brief(request, 4 * MESSAGE_CHARS), message=brief(message, MESSAGE_CHARS), status=status,
            ))  # fmt: skip
        await self._record_conflicts(name, [d.conflict for d in chunk if d.conflict is not None])
        if run.only_failed or any(d.kind is not Kind.ERROR for d in chunk):
            await self._clear_errors(name, [d for d in chunk if d.kind is not Kind.ERROR])
        if run.mode is Mode.RECONCILE:
            drift = [
                DriftRecord(
                    map=name,
                    key=d.key,
                    behind=str(w.into),
                    run_id=run.run_id,
                    values={c: normalize(v) for c, v in w.values.items()},
                    action=w.delete or ("create" if w.create else "update"),
                )
                for d in chunk
                if d.kind is not Kind.ERROR
                for w in d.writes
            ]
            await self.runs.record_drift(drift)
        if cause is not None:  # the step fails; what did land is recorded above, and only `unsent` is undone
            raise ChunkFailed(cause, unsent)

    async def _record_conflicts(self, name: str, conflicts: list[ConflictRecord]) -> None:
        """Each conflict in the log — but a parked one still open from an earlier run, same row and difference, once
        (a run left a new open conflict for it every time)."""
        if any(c.status == "open" for c in conflicts):
            table = self.ledger.table("conflicts")
            query = table.query_entities("PartitionKey eq @m and Status eq 'open'", parameters={"m": name})
            open_ = {same_difference(ConflictRecord.model_validate_json(e["Record"])) async for e in query}
            conflicts = [c for c in conflicts if c.status != "open" or same_difference(c) not in open_]
        for conflict in conflicts:
            await self.ledger.record_conflict(conflict)

    async def _clear_errors(self, name: str, done: list[Decision]) -> None:
        """A row written now leaves the error log (it was brought over)."""
        table = self.ledger.table("errors")
        known = {e.event_id for e in await self.ledger.errors(name) if e.event_id.startswith("sync:")}
        if not known:
            return  # (nothing to look up per row)
        for d in done:
            event_id = error_id(name, d.key)
            if event_id in known:
                await table.delete_entity(name, safe_row_key(event_id))

    @staticmethod
    def _count(state: MapProgress, d: Decision) -> None:
        counts = {Side.FNO: state.fno, Side.DATAVERSE: state.dataverse}
        samples = state.samples.setdefault(str(d.kind), [])
        if len(samples) < SAMPLES:  # (built only when kept: a run counts every row)
            # Values cut short: the checkpoint must fit Table Storage (`checkpoint`); a sample shows the kind of row.
            writes = [{"into": str(w.into), "values": {k: brief(normalize(v)) for k, v in w.values.items()}}
                      for w in d.writes]  # fmt: skip
            sample: dict[str, Any] = {"key": d.key, "writes": writes}
            if d.error:
                sample["error"] = brief(d.error, MESSAGE_CHARS)
            if d.detail:
                sample["detail"] = d.detail
            samples.append(sample)
        if d.kind is Kind.ERROR:
            into = d.error_side.other if d.error_side else Side.DATAVERSE
            counts[into].errors += 1
            return
        if d.kind in (Kind.LINKED, Kind.UNCHANGED, Kind.SKIPPED):
            for side in Side:
                c = counts[side]
                if d.kind is Kind.LINKED:
                    c.linked += 1
                elif d.kind is Kind.UNCHANGED:
                    c.unchanged += 1
                else:
                    c.skipped += 1
            return
        if d.kind is Kind.CONFLICT:
            for side in Side:
                counts[side].conflicts += 1
        for w in d.writes:
            if w.delete:
                counts[w.into].deleted += 1
            elif w.create:
                counts[w.into].created += 1
            else:
                counts[w.into].updated += 1
