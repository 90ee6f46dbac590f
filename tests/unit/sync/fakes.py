"""In-memory fakes of apply's ports (`shared.sync.ports`): a ledger with ETags, and each app's rows with ETags,
conditional writes (412), guarded creates and a request counter. Fast: no processes, no network."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.connectors.errors import ConcurrencyConflict, ConnectorError, NotFound
from shared.events.model import ChangeEvent
from shared.ledger.model import ConflictRecord, ErrorRecord, LedgerEntry, key_text
from shared.ledger.tables import LedgerConflict
from shared.maps.model import Side, TableMap
from shared.maps.transform import LookupRef
from shared.sync.rows import Current, RowWrite, Written, row_slot

COMPANY_ID = "00000000-0000-4000-8000-00000000c0de"


class FakeLedger:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[str, str]] = {}  # (map, key) → (json, etag)
        self.index: dict[tuple[str, Side, str], dict[str, Any]] = {}
        self.conflict_log: list[ConflictRecord] = []  # as recorded: one per row key (the Table's RowKey)
        self.conflict_fails = 0  # the next this many `record_conflict` calls fail (Table Storage unreachable)
        self.error_log: list[ErrorRecord] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.held_events: list[tuple[str, ChangeEvent]] = []
        self.transactions = 0
        self.save_conflicts = 0  # the next this many `save` calls answer LedgerConflict (a concurrent writer)
        self.save_fail: dict[str, Exception] = {}  # a key value → the error saving its entry answers (too large, a 5xx)
        self._etag = 0

    async def get(self, map_name: str, key: dict[str, Any]) -> LedgerEntry | None:
        found = self.entries.get((map_name, key_text(key)))
        if found is None:
            return None
        entry = LedgerEntry.model_validate_json(found[0])
        entry.etag = found[1]
        return entry

    async def save(self, entry: LedgerEntry) -> LedgerEntry:
        self.transactions += 1
        if self.save_conflicts:
            self.save_conflicts -= 1
            raise LedgerConflict("the entry changed since it was read")
        return self._save(entry)

    def _save(self, entry: LedgerEntry) -> LedgerEntry:
        for value in entry.key.values():
            if str(value) in self.save_fail:
                raise self.save_fail[str(value)]
        slot = (entry.map, key_text(entry.key))
        stored = self.entries.get(slot)
        if (stored is None) != (entry.etag is None) or (stored is not None and stored[1] != entry.etag):
            raise LedgerConflict("the entry changed since it was read")
        self._etag += 1
        entry.etag = str(self._etag)
        self.entries[slot] = (entry.model_dump_json(), entry.etag)
        for side in Side:
            if row_id := entry.side(side).row_id:
                self.index[(entry.map, side, row_id.lower())] = entry.key
        return entry

    async def save_many(self, entries: Sequence[LedgerEntry]) -> list[LedgerEntry | Exception]:
        self.transactions += len({e.map for e in entries})
        out: list[LedgerEntry | Exception] = []
        for entry in entries:
            try:
                out.append(self._save(entry))
            except Exception as exc:  # as the Table ledger: each entry answers its own failure
                out.append(exc)
        return out

    async def key_for(self, map_name: str, side: Side, row_id: str) -> dict[str, Any] | None:
        return self.index.get((map_name, side, row_id.lower()))

    async def record_conflict(self, record: ConflictRecord) -> None:
        if self.conflict_fails:
            self.conflict_fails -= 1
            raise OSError("the conflicts table is unreachable")
        if all((c.map, c.row_key()) != (record.map, record.row_key()) for c in self.conflict_log):
            self.conflict_log.append(record)  # as the Table ledger: a second record of one conflict is a no-op

    async def record_error(self, record: ErrorRecord) -> None:
        self.error_log.append(record)

    async def error_for(self, map_name: str, event_id: str) -> ErrorRecord | None:
        return next((e for e in self.error_log if e.map == map_name and e.event_id == event_id), None)

    async def recent_error_count(self, map_name: str, minutes: float) -> int:
        return sum(1 for e in self.error_log if e.map == map_name)

    async def is_paused(self, map_name: str) -> bool:
        return self.states.get(map_name, {}).get("state") in ("paused", "invalid")

    async def map_state(self, map_name: str) -> dict[str, Any]:
        return self.states.get(map_name, {"state": "running"})

    async def set_map_state(
        self, map_name: str, state: str, reason: str = "", problems: list[dict[str, str]] | None = None
    ) -> None:
        self.states[map_name] = {"state": state, "reason": reason}

    async def hold(self, map_name: str, event: ChangeEvent) -> None:
        self.held_events.append((map_name, event))


def _key(key: Mapping[str, Any] | str) -> str:
    return (
        key.lower() if isinstance(key, str) else json.dumps({k: str(v).lower() for k, v in key.items()}, sort_keys=True)
    )


@dataclass
class FakeRow:
    record: dict[str, Any]
    version: int
    row_id: str | None = None


@dataclass
class FakeRows:
    """One app's rows of every map. `requests` counts what the app would be sent (a `$batch` is one request)."""

    side: Side
    rows: dict[tuple[str, str], FakeRow] = field(default_factory=dict)
    requests: int = 0
    batches: list[int] = field(default_factory=list)  # the size of each `$batch`
    fail: dict[str, ConnectorError] = field(default_factory=dict)  # a key or value → the error writing it answers
    fail_next: dict[str, list[ConnectorError]] = field(default_factory=dict)  # as `fail`, once per error listed
    before_next_write: Callable[[], object] | None = None  # a person's change landing just before our next write
    _version: int = 1000

    def _table(self, m: TableMap) -> str:
        return m.dataverse.entity_set if self.side is Side.DATAVERSE else m.fno.entity

    def _find(self, m: TableMap, key: Mapping[str, Any] | str) -> tuple[tuple[str, str], FakeRow | None]:
        table = self._table(m)
        if isinstance(key, str):  # a Dataverse row id
            for slot, row in self.rows.items():
                if slot[0] == table and row.row_id == key.lower():
                    return slot, row
            return (table, key.lower()), None
        slot = (table, _key(key))
        return slot, self.rows.get(slot)

    def etag(self, version: int) -> str:
        return f'W/"{version}"'

    def _stored_key(self, key: Mapping[str, Any]) -> dict[str, Any]:
        """A Dataverse row holds its company as a lookup (the key names it by code)."""
        if self.side is Side.DATAVERSE and "msdyn_company" in key:
            return {**key, "msdyn_company": {"$type": "lookup", "id": COMPANY_ID}}
        return dict(key)

    def put(self, m: TableMap, key: Mapping[str, Any], record: dict[str, Any], row_id: str | None = None) -> FakeRow:
        """A person's write in the app (not counted)."""
        slot, row = self._find(m, key)
        self._version += 1
        row_id = row.row_id if row else (row_id or f"00000000-0000-4000-8000-{self._version:012d}")
        merged = {**(row.record if row else {}), **self._stored_key(key), **record}
        if self.side is Side.DATAVERSE:
            merged[f"{m.dataverse.table}id"] = row_id
        self.rows[slot] = FakeRow(merged, self._version, row_id)
        return self.rows[slot]

    def _referenced(self, ref: LookupRef) -> str:
        """The id a lookup binds to: the company, or the referenced row here (a made-up id if it is not here)."""
        if ref.entity_set == "cdm_companies":
            return COMPANY_ID
        row = self.rows.get((ref.entity_set, _key(ref.key)))
        return row.row_id or "" if row else json.dumps(ref.key, sort_keys=True)

    async def read(self, m: TableMap, key: Mapping[str, Any] | str) -> Current | None:
        self.requests += 1
        _, row = self._find(m, key)
        if row is None:
            return None
        return Current(dict(row.record), self.etag(row.version), row.row_id)

    async def read_many(self, m: TableMap, keys: Sequence[Mapping[str, Any]]) -> dict[str, Current]:
        self.requests += 1
        found: dict[str, Current] = {}
        for key in keys:
            _, row = self._find(m, key)
            if row is not None:
                found[row_slot(key)] = Current(dict(row.record), self.etag(row.version), row.row_id)
        return found

    def _write(self, m: TableMap, w: RowWrite) -> Written:
        for value in [*w.key.values(), *w.values.values()]:  # a key, or a value written, that the app refuses
            if str(value) in self.fail:
                raise self.fail[str(value)]
            if self.fail_next.get(str(value)):
                raise self.fail_next[str(value)].pop(0)
        slot, row = self._find(m, w.key)
        if w.create and row is not None:
            raise ConcurrencyConflict("already exists", status=412)
        if not w.create and row is None:
            raise NotFound("no such row", status=404)
        if w.if_match not in (None, "*") and row is not None and w.if_match != self.etag(row.version):
            raise ConcurrencyConflict("the ETag does not match", status=412)
        values = {k: v for k, v in w.values.items()}
        for name, ref in w.lookups.items():
            values[name] = None if ref is None else {"$type": "lookup", "id": self._referenced(ref)}
        self._version += 1
        row_id = row.row_id if row else f"00000000-0000-4000-8000-{self._version:012d}"
        merged = {**(row.record if row else {}), **self._stored_key(w.key), **values}
        if self.side is Side.DATAVERSE:
            merged[f"{m.dataverse.table}id"] = row_id
        self.rows[slot] = FakeRow(merged, self._version, row_id)
        return Written(self.etag(self._version), row_id if self.side is Side.DATAVERSE else None, dict(merged))

    async def write(
        self, m: TableMap, key: Mapping[str, Any], values: Mapping[str, Any],
        lookups: Mapping[str, LookupRef | None], *, if_match: str | None, create: bool, tag: str,
    ) -> Written:  # fmt: skip
        self.requests += 1
        if (before := self.before_next_write) is not None:
            self.before_next_write = None
            before()
        return self._write(m, RowWrite(key, values, lookups, if_match, create, tag))

    async def write_many(self, m: TableMap, writes: Sequence[RowWrite]) -> list[Written | ConnectorError]:
        self.requests += 1
        self.batches.append(len(writes))
        out: list[Written | ConnectorError] = []
        for w in writes:
            try:
                out.append(self._write(m, w))
            except ConnectorError as exc:
                out.append(exc)
        return out

    async def delete(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        self.requests += 1
        slot, row = self._find(m, key)
        if row is None:
            raise NotFound("no such row", status=404)
        del self.rows[slot]

    async def deactivate(self, m: TableMap, key: Mapping[str, Any] | str, tag: str) -> None:
        self.requests += 1
        _, row = self._find(m, key)
        if row is None:
            raise NotFound("no such row", status=404)
        row.record["statecode"] = 1
        self._version += 1
        row.version = self._version

    async def company_code(self, company_id: str) -> str | None:
        return "USMF" if company_id.lower() == COMPANY_ID else None
