"""The decisions of a sync run, pure: (rows of both sides, the ledger, the map) → what to write where.

Rows are matched by integration key — the ledger first (a Dataverse row it knows by id), then the key values. Per
key: on one side only → created on the other (each field's direction honoured); on both and equal under the map →
linked in the ledger, nothing written; on both and different → the columns changed since the ledger's last sync
flow (reconciliation: the side that did not change was *behind*), and what changed on both, or any difference
without a ledger entry, is settled by the map: its `initial_sync_master`, or its conflict policy when that is
`last_writer_wins` (by the rows' modification times) or `manual` (nothing written, a conflict left open).
Values are compared where they are written: a column flowing into Dataverse as Dataverse holds it (so a one-way
text rule such as lower-casing does not count as a difference), a lookup by the F&O key it names.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import JsonValue

from shared.connectors.wire import etag_version
from shared.ledger.model import ConflictRecord, LedgerEntry, SideState, key_text
from shared.maps.model import ConflictPolicy, FieldMap, Side, TableMap
from shared.maps.transform import CompiledMap, LookupRef, TargetRow, passes_filter, plain, transform
from shared.sync.decide import normalize

_Model = TypeVar("_Model", SideState, LedgerEntry)
_ROW_IDS = uuid.UUID("6f1d8a52-4c3e-4b7a-9f0e-2d5c1b8a7e40")  # namespace of the Dataverse ids a run assigns
_ROW_ID_BYTES = _ROW_IDS.bytes


class Kind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    LINKED = "linked"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # different on both sides; settled (written) or parked (manual)
    DELETED = "deleted"  # a linked row gone from one app: deleted (or deactivated) in the other, as the map says
    ERROR = "error"
    SKIPPED = "skipped"  # the ledger knows a newer state (live sync is ahead), or the row was deleted


@dataclass(frozen=True)
class Snapshot:
    """One row of one side as a run read it: canonical values (lookups as `{"$type": "lookup", "id"}`)."""

    record: dict[str, Any]
    etag: str | None = None
    row_id: str | None = None  # Dataverse GUID
    modified: str | None = None
    read_at: datetime | None = None  # F&O: when the run began reading it (its ETag tells no order: `_stale`)

    @property
    def version(self) -> str | None:
        return etag_version(self.etag)


@dataclass
class Write:
    into: Side
    create: bool
    key: dict[str, Any]  # F&O: the entity key; Dataverse: the alternate key (company as its code)
    values: dict[str, Any]
    lookups: dict[str, LookupRef | None] = field(default_factory=dict)
    if_match: str | None = None  # the target's ETag as read: a row changed since is left to live sync
    row_id: str | None = None  # Dataverse: the row's id (assigned by the run for a create)
    delete: str | None = None  # "delete" | "deactivate": the row is removed (deactivated), `values` unused


@dataclass
class Decision:
    key: dict[str, Any]  # the integration key, in F&O names
    kind: Kind
    writes: list[Write] = field(default_factory=list)
    entry: LedgerEntry | None = None  # the ledger entry to save (before writing, so the echo is recognised)
    conflict: ConflictRecord | None = None
    error: str | None = None
    error_side: Side | None = None  # the side whose row could not be brought over
    behind: list[Side] = field(default_factory=list)  # the sides written because they lagged (drift)
    detail: str = ""

    @functools.cached_property
    def key_text(self) -> str:  # asked several times per row (cursor, ledger, errors): worked out once
        return key_text(self.key)

    @property
    def keyed(self) -> bool:
        """Named by an integration key. A Dataverse row whose key is incomplete is named by its row id instead, and
        must not move a step's cursor: `row_id=…` sorts after every real key and would skip the map's other rows."""
        return bool(self.key) and "row_id" not in self.key


@dataclass
class Lookups:
    """What the transforms need from I/O, gathered before planning: company codes of Dataverse company ids, the F&O
    keys of rows of referenced maps by their Dataverse id (from those maps' ledger)."""

    companies: dict[str, str] = field(default_factory=dict)
    fno_keys: dict[tuple[str, str], dict[str, JsonValue]] = field(default_factory=dict)

    def fno_key(self, map_name: str, dataverse_id: str) -> dict[str, JsonValue] | None:
        return self.fno_keys.get((map_name, dataverse_id.lower()))

    def company_code(self, dataverse_company_id: str) -> str | None:
        return self.companies.get(dataverse_company_id.lower())


def dataverse_row_id(map_name: str, key: Mapping[str, Any]) -> str:
    """The id a run gives a row it creates in Dataverse: derived from the key, so a create repeated after a crash
    names the same row (the second is refused) instead of making a duplicate."""
    # `uuid.uuid5(_ROW_IDS, name)`, step by step with the namespace's bytes worked out once (one id a created row).
    digest = hashlib.sha1(_ROW_ID_BYTES + f"{map_name}:{key_text(dict(key))}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def integration_key(m: TableMap, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """An F&O row's integration key (the company lower-cased, as apply names it); None when incomplete."""
    key: dict[str, Any] = {}
    company = m.company_field(Side.FNO)
    for name in m.fno.key:
        value = plain(record.get(name))
        if value in (None, ""):
            return None
        key[name] = str(value).lower() if name == company else value
    return key


@dataclass
class _Pair:
    fno: Snapshot | None = None
    fno_key: dict[str, Any] | None = None  # the F&O row's integration key (worked out once while matching)
    dataverse: Snapshot | None = None
    dataverse_key: TargetRow | None = None  # the Dataverse row as F&O values (computed once while matching)
    error: str | None = None
    # A row of a key the ledger knows, read but outside the map's filters on that side: not gone (not deleted).
    fno_outside: bool = False
    dataverse_outside: bool = False


def match(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    fno_rows: Iterable[Snapshot],
    dataverse_rows: Iterable[Snapshot],
    ledger: Mapping[str, LedgerEntry],
    index: Mapping[tuple[Side, str], str],
    lookups: Lookups,
) -> tuple[dict[str, _Pair], list[Decision]]:
    """Rows of both sides by integration key text; rows outside the map's filters are out of scope."""
    m = compiled.map
    pairs: dict[str, _Pair] = {}
    errors: list[Decision] = []
    outside = False
    for row in fno_rows:
        if not passes_filter(compiled, Side.FNO, row.record):
            key = integration_key(m, row.record)
            if key is not None and (text := key_text(key)) in ledger:
                pairs.setdefault(text, _Pair()).fno_outside = outside = True
            continue
        key = integration_key(m, row.record)
        if key is None:
            errors.append(Decision({}, Kind.ERROR, error="the F&O row's key is incomplete", error_side=Side.FNO))
            continue
        pair = pairs.setdefault(key_text(key), _Pair())
        pair.fno, pair.fno_key = row, key
    for row in dataverse_rows:
        if not passes_filter(compiled, Side.DATAVERSE, row.record):
            known = index.get((Side.DATAVERSE, (row.row_id or "").lower()))
            if known is not None and known in ledger:
                pairs.setdefault(known, _Pair()).dataverse_outside = outside = True
            continue
        as_fno = transform(compiled, Side.DATAVERSE, row.record, maps, lookups)
        known = index.get((Side.DATAVERSE, (row.row_id or "").lower()))
        if known is not None and known in ledger:
            text = known
        else:
            key = {k: (str(v).lower() if k == m.company_field(Side.FNO) else v) for k, v in as_fno.key.items()}
            if len(key) != len(m.fno.key) or any(v in (None, "") for v in key.values()):
                why = "; ".join(as_fno.errors) or "the Dataverse row's key is incomplete"
                errors.append(Decision({"row_id": row.row_id}, Kind.ERROR, error=why, error_side=Side.DATAVERSE))
                continue
            text = key_text(key)
        pair = pairs.setdefault(text, _Pair())
        pair.dataverse, pair.dataverse_key = row, as_fno
    if outside:  # a key with no row in scope on either side is not the map's
        pairs = {t: p for t, p in pairs.items() if p.fno is not None or p.dataverse is not None}
    return pairs, errors


def plan_map(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    fno_rows: Iterable[Snapshot],
    dataverse_rows: Iterable[Snapshot],
    ledger: Mapping[str, LedgerEntry],
    index: Mapping[tuple[Side, str], str],
    lookups: Lookups,
    run_id: str = "run",
    suspect: Callable[[str], Collection[str]] | None = None,
) -> list[Decision]:
    """One decision per integration key seen on either side (in key order, so a plan reads the same twice)."""
    pairs, decisions = match(compiled, maps, fno_rows, dataverse_rows, ledger, index, lookups)
    return decisions + decide(compiled, maps, pairs, sorted(pairs), ledger, lookups, run_id, suspect)


def decide(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    pairs: Mapping[str, _Pair],
    texts: Iterable[str],
    ledger: Mapping[str, LedgerEntry],
    lookups: Lookups,
    run_id: str = "run",
    suspect: Callable[[str], Collection[str]] | None = None,
) -> list[Decision]:
    """The decisions of the matched keys `texts`, in that order: a run decides its keys chunk by chunk, so the
    first chunk is written while the next ones are decided. `suspect`: the marks of the chunks an earlier step
    began and did not finish that hold a key (their ledger entries may hold values it meant to write and never
    did) — trusted only for an entry carrying one of those marks (`LedgerEntry.sync_chunk`): that chunk saved it."""
    out = []
    for text in texts:
        entry = ledger.get(text)
        saved = (
            suspect is not None and entry is not None and entry.sync_chunk is not None
            and entry.sync_chunk in suspect(text)
        )  # fmt: skip
        out.append(_decide(compiled, maps, pairs[text], entry, lookups, run_id, saved))
    return out


def _stale(snapshot: Snapshot | None, state_version: str | None, recorded_at: datetime) -> bool:
    """Live sync recorded a newer state of this side than the run read. Dataverse versions are ordered. An F&O ETag
    is an opaque token (`wire.etag_version`): one that differs from the ledger's, in an entry live sync saved after
    the run began reading F&O, may be older or newer than what the run read — live sync, which read the row after,
    keeps it (its write would otherwise be undone by the run's older copy). An entry saved before the read is older
    than the snapshot: a difference then is a change the ledger missed (drift), and the run repairs it."""
    version = snapshot.version if snapshot is not None else None
    if not version or not state_version:
        return False
    if version.isdigit() and state_version.isdigit():
        return int(version) < int(state_version)
    read_at = snapshot.read_at if snapshot is not None else None
    return version != state_version and read_at is not None and recorded_at >= read_at


def _decide(
    compiled: CompiledMap,
    maps: Mapping[str, CompiledMap],
    pair: _Pair,
    entry: LedgerEntry | None,
    lookups: Lookups,
    run_id: str,
    unwritten: bool = False,
) -> Decision:
    m = compiled.map
    fno, dv = pair.fno, pair.dataverse
    to_dv = transform(compiled, Side.FNO, fno.record, maps, lookups) if fno is not None else None
    to_fno = pair.dataverse_key
    key = pair.fno_key if fno is not None else None
    if key is None and to_fno is not None:
        key = {k: (str(v).lower() if k == m.company_field(Side.FNO) else v) for k, v in to_fno.key.items()}
    key = key or {}
    if entry is not None and (
        entry.deleted or _stale(fno, entry.fno.version, entry.updated_at)
        or _stale(dv, entry.dataverse.version, entry.updated_at)
    ):  # fmt: skip
        why = "deleted on one side" if entry.deleted else "live sync knows a newer version"
        return Decision(key, Kind.SKIPPED, detail=why)
    if entry is not None and (fno is None) != (dv is None) and not unwritten:
        # (An entry an unfinished chunk saved for its create is not a linked row: the create never landed.)
        gone = Side.FNO if fno is None else Side.DATAVERSE
        if pair.fno_outside or pair.dataverse_outside:
            return Decision(key, Kind.SKIPPED, detail=f"outside the map's filters in {_APP[gone]}: left as it is")
        if _was_synced(entry, gone):
            return _deleted(m, key, gone, fno or dv, entry)
    if fno is not None and dv is None:
        return _create(m, key, Side.DATAVERSE, fno, to_dv, entry)
    if dv is not None and fno is None:
        return _create(m, key, Side.FNO, dv, to_fno, entry)
    assert fno is not None and dv is not None and to_dv is not None and to_fno is not None
    for row, side in ((to_dv, Side.FNO), (to_fno, Side.DATAVERSE)):
        if row.errors:
            return Decision(key, Kind.ERROR, error="; ".join(row.errors), error_side=side)
    return _compare(compiled, key, fno, dv, to_dv, to_fno, entry, run_id, unwritten)


_READABLE: dict[tuple[int, Side], frozenset[str]] = {}


def _readable(m: TableMap, side: Side) -> frozenset[str]:
    """`m.readable(side)`, worked out once per map (it is asked for every row)."""
    names = _READABLE.get((id(m), side))
    if names is None:
        names = _READABLE[(id(m), side)] = frozenset(m.readable(side))
    return names


_SIDE_FIELDS = frozenset(SideState.model_fields)
_ENTRY_FIELDS = frozenset(LedgerEntry.model_fields)
# Whether `_side_state` and `_entry` name every field of their models (checked once, not per row): a field added to
# a model and not there makes them go through pydantic, which fills in its default.
_NAMED = _SIDE_FIELDS == {"row_id", "version", "etag", "values", "last_event", "ahead"} and _ENTRY_FIELDS == {
    "map", "key", "fno", "dataverse", "deleted", "conflict", "updated_at", "sync_chunk", "sync_before", "etag",
    "indexed"}  # fmt: skip


def _built(cls: type[_Model], values: dict[str, Any], fields: frozenset[str]) -> _Model:
    """A model from trusted values naming every field: what `model_construct` does once it has worked out the
    values, without its per-field walk over aliases and defaults (3 models a row of a large run: it was the
    largest cost of deciding a created row)."""
    if not _NAMED:
        return cls.model_construct(**values)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(fields))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


_WRITES_INTO: dict[tuple[int, Side], tuple[TableMap, bool]] = {}


def _writes_into(m: TableMap, into: Side) -> bool:
    """Whether any field of the map flows into `into`: worked out once per map (the map kept beside its id, so the
    id is never another map's), not for every created row."""
    known = _WRITES_INTO.get((id(m), into))
    if known is None or known[0] is not m:
        known = _WRITES_INTO[(id(m), into)] = (m, any(m.flows(f, into) for f in m.fields))
    return known[1]


def _side_state(
    values: dict[str, Any] | None = None, version: str | None = None, row_id: str | None = None
) -> SideState:
    state = {"row_id": row_id, "version": version, "etag": None, "values": {} if values is None else values,
             "last_event": None, "ahead": False}  # fmt: skip
    return _built(SideState, state, _SIDE_FIELDS)


def _entry(
    m: TableMap, key: dict[str, Any], entry: LedgerEntry | None, sides: tuple[SideState, SideState] | None = None
) -> LedgerEntry:
    """A copy of `entry` to change, or a new one (its sides `sides`, F&O's then Dataverse's, when given)."""
    if entry is None:  # built unvalidated, every field given: the values come from the map and the rows, once per
        # row of a large run (a default left to pydantic costs an `inspect.signature` of its factory per row)
        fno, dataverse = sides or (_side_state(), _side_state())
        values = {"map": m.name, "key": key, "fno": fno, "dataverse": dataverse, "deleted": False, "conflict": None,
                  "updated_at": datetime.now(UTC), "sync_chunk": None, "sync_before": None, "etag": None,
                  "indexed": set()}  # fmt: skip
        return _built(LedgerEntry, values, _ENTRY_FIELDS)
    copy = {"etag": entry.etag, "indexed": set(entry.indexed), "sync_before": None}  # (what a write finds: below)
    return entry.model_copy(deep=True, update=copy)


def _plain_text(v: Any) -> bool:
    """Text `normalize` leaves as it is: not empty, and not date-like ("" and F&O's 1900-01-01 are null, date-times
    one UTC form — the ledger must hold what live sync compares)."""
    return type(v) is str and v != "" and v[4:5] != "-"


def _normalized(values: Mapping[str, Any], names: Iterable[str] | None = None) -> dict[str, Any]:
    """`normalize` of each value (of `names` only, those present, when given), nulls and plain text taken as they
    are without a call: most of a row's values are, and a created row normalises ~90 of them."""
    if names is None:
        return {c: v if v is None or _plain_text(v) else normalize(v) for c, v in values.items()}
    return {n: v if (v := values[n]) is None or _plain_text(v) else normalize(v) for n in names if n in values}


def _record_side(entry: LedgerEntry, side: Side, snapshot: Snapshot | None, names: Iterable[str]) -> None:
    state = entry.side(side)
    if snapshot is not None:
        state.values = {**state.values, **_normalized(snapshot.record, names)}  # `fingerprint`, faster
        state.version = snapshot.version or state.version
        if side is Side.DATAVERSE:
            state.row_id = snapshot.row_id or state.row_id


_APP = {Side.FNO: "F&O", Side.DATAVERSE: "Dataverse"}


def _was_synced(entry: LedgerEntry, side: Side) -> bool:
    """The ledger knows `side`'s row of the pair: it was created or linked there (a Dataverse row by its id)."""
    state = entry.side(side)
    return bool(state.row_id) if side is Side.DATAVERSE else bool(state.values or state.version)


def _deleted(m: TableMap, key: dict[str, Any], gone: Side, other: Snapshot | None, entry: LedgerEntry) -> Decision:
    """A linked row gone from `gone` (deleted, its notification lost): not created again in the app that deleted
    it, but carried to the other as live sync carries a delete notification (`shared/sync/deletes.py`): the map's
    `delete` — `delete` removes the row, `deactivate` deactivates a Dataverse row (F&O has no deactivation: its
    row stays), `ignore` leaves it; the entry is marked deleted (but for `ignore`, as live sync leaves it)."""
    into, where = gone.other, _APP[gone]
    if m.delete == "ignore":
        return Decision(key, Kind.SKIPPED, detail=f"deleted in {where}; the map ignores deletes")
    new = _entry(m, key, entry)
    new.deleted = True
    new.side(into).etag = None
    if into is Side.FNO and m.delete == "deactivate":
        return Decision(key, Kind.SKIPPED, entry=new, detail=f"deleted in {where}; F&O has no deactivation: kept")
    etag = other.etag if other is not None else None  # conditional: a row changed since is left to live sync
    if into is Side.DATAVERSE:
        row_id = (other.row_id if other is not None else None) or new.dataverse.row_id
        write = Write(into, False, {}, {}, if_match=etag, row_id=row_id, delete=m.delete)
    else:
        write = Write(into, False, dict(key), {}, if_match=etag, delete=m.delete)
    return Decision(key, Kind.DELETED, [write], new, behind=[into], detail=f"deleted in {where}: {m.delete}d")


def _create(
    m: TableMap, key: dict[str, Any], into: Side, source: Snapshot, row: TargetRow | None, entry: LedgerEntry | None
) -> Decision:
    side = into.other
    if row is None or row.errors:
        return Decision(key, Kind.ERROR, error="; ".join(row.errors) if row else "no row", error_side=side)
    if row.missing:
        names = ", ".join(f"{r.field} → {r.map}" for r in row.missing)
        return Decision(key, Kind.ERROR, error=f"referenced rows not synced yet: {names}", error_side=side)
    if not _writes_into(m, into):
        return Decision(key, Kind.UNCHANGED, detail=f"the map does not write into {into}")
    row_id = None
    if into is Side.DATAVERSE:
        row_id = (entry.dataverse.row_id if entry is not None else None) or dataverse_row_id(m.name, key)
        company = m.company_field(Side.DATAVERSE)
        columns = {c: v for c, v in row.key.items() if c != company} | row.values
        write = Write(into, True, dict(row.key), columns, dict(row.lookups), row_id=row_id)
        written = _normalized(columns)
    else:
        write = Write(into, True, dict(row.key), dict(row.values))
        written = _normalized({**row.values, **row.key})
    if entry is None:
        # A new entry is built with its sides' final values, as `_record_side` and the lines below would leave them:
        # most rows of a large run are created, and assigning a model's fields one by one (pydantic's `__setattr__`,
        # six a row) cost more than building it.
        read = _side_state(_normalized(source.record, _readable(m, side)), source.version,
                           source.row_id if side is Side.DATAVERSE else None)  # fmt: skip
        target = _side_state(written, None, row_id)
        new = _entry(m, key, None, (target, read) if into is Side.FNO else (read, target))
        return Decision(key, Kind.CREATED, [write], new, behind=[into])
    new = _entry(m, key, entry)
    _record_side(new, side, source, _readable(m, side))
    state = new.side(into)
    if row_id is not None:
        state.row_id = row_id
    state.values = written
    state.version = None
    return Decision(key, Kind.CREATED, [write], new, behind=[into])


# By the map's id, the map kept beside it (so its id is never another map's).
_COMPARED: dict[int, tuple[TableMap, list[tuple[FieldMap, bool, bool, Side | None]]]] = {}


def _compared(m: TableMap) -> list[tuple[FieldMap, bool, bool, Side | None]]:
    """The fields two rows are compared on (not the keys, not the company), each with whether it flows into
    Dataverse, into F&O, and the only side it can be written into (None: either); worked out once per map."""
    cached = _COMPARED.get(id(m))
    if cached is None:
        company = (m.company_field(Side.FNO), m.company_field(Side.DATAVERSE))
        found = []
        for f in m.fields:
            if f.fno in company or f.dataverse in company or f.fno in m.fno.key or f.dataverse in m.dataverse.key:
                continue
            into_dv, into_fno = m.flows(f, Side.DATAVERSE), m.flows(f, Side.FNO)
            if into_dv or into_fno:
                only = None if into_dv and into_fno else (Side.DATAVERSE if into_dv else Side.FNO)
                found.append((f, into_dv, into_fno, only))
        cached = _COMPARED[id(m)] = (m, found)
    return cached[1]


def _differences(
    m: TableMap, fno: Snapshot, dv: Snapshot, to_dv: TargetRow, to_fno: TargetRow
) -> list[tuple[FieldMap, Side | None]]:
    """The fields whose values differ, each with the only side it can be written into (None: either)."""
    out: list[tuple[FieldMap, Side | None]] = []
    for f, into_dv, into_fno, only in _compared(m):
        if f.lookup:
            if f.fno is None or (not into_fno and f.dataverse is not None and f.dataverse not in to_dv.lookups):
                continue
            ours = normalize(plain(fno.record.get(f.fno)) or None)
            if any(r.field == f.fno for r in to_fno.missing):
                differs = True
            elif f.fno in to_fno.values:
                differs = normalize(plain(to_fno.values[f.fno]) or None) != ours
            else:
                differs = ours is not None and f.dataverse in dv.record and dv.record[f.dataverse] is None
        elif into_dv and f.dataverse is not None and (f.dataverse in to_dv.values or not into_fno):
            if f.dataverse not in to_dv.values:
                continue  # one-way into Dataverse, F&O holds nothing here: nothing to write
            differs = normalize(to_dv.values[f.dataverse]) != normalize(dv.record.get(f.dataverse))
        else:
            # (Also a two-way column F&O's row does not carry: empty in F&O, so a value only Dataverse holds is a
            # difference, compared as it would be written into F&O.)
            if f.fno is None or f.fno not in to_fno.values:
                continue
            differs = normalize(to_fno.values[f.fno]) != normalize(fno.record.get(f.fno))
        if differs:
            out.append((f, only))
    return out


def _changed_since(entry: LedgerEntry | None, side: Side, f: FieldMap, snapshot: Snapshot) -> bool | None:
    """Whether `side` changed this field since the ledger last synced it; None when there is no ledger entry. A
    column the entry does not hold was empty then (a row carries no column it has no value in): a value set since is
    a change on this side only, not one on both."""
    name = f.fno if side is Side.FNO else f.dataverse
    if entry is None or name is None:
        return None
    # (The ledger's value normalised again: an entry saved before "" was taken for no value holds "".)
    return bool(normalize(snapshot.record.get(name)) != normalize(entry.side(side).values.get(name)))


def _unwritten(entry: LedgerEntry | None, side: Side, f: FieldMap, fno: Snapshot, dv: Snapshot) -> bool:
    """`side` still holds, in this field's column, what the step that saved the entry read there before writing it:
    that write never landed, and nobody changed the column since (a person's later value is not reversed)."""
    name = f.fno if side is Side.FNO else f.dataverse
    before = entry.sync_before if entry is not None else None
    if not before or name is None or f"{side}:{name}" not in before:
        return False
    return bool(normalize((fno if side is Side.FNO else dv).record.get(name)) == before[f"{side}:{name}"])


def same_difference(record: ConflictRecord) -> tuple[str, str]:
    """What makes two conflict records the same for a person: the row and each contested column's two values. A
    parked (manual) conflict a run meets again, still open, is that one — not another to resolve."""
    fields = sorted((name, repr(v.get("fno")), repr(v.get("dataverse"))) for name, v in record.fields.items())
    return key_text(record.key), repr(fields)


def _time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _master(m: TableMap, fno: Snapshot, dv: Snapshot) -> Side | None:
    """Who wins a difference nothing else settles; None: nobody (manual, parked for a person)."""
    policy = m.conflict.policy
    if policy is ConflictPolicy.MANUAL:
        return None
    if policy is ConflictPolicy.LAST_WRITER_WINS:
        f_time, d_time = _time(fno.modified), _time(dv.modified)
        if f_time is not None and d_time is not None:
            return Side.FNO if f_time >= d_time else Side.DATAVERSE
    return m.initial_sync_master


def _compare(
    compiled: CompiledMap,
    key: dict[str, Any],
    fno: Snapshot,
    dv: Snapshot,
    to_dv: TargetRow,
    to_fno: TargetRow,
    entry: LedgerEntry | None,
    run_id: str,
    unwritten: bool = False,
) -> Decision:
    m = compiled.map
    differences = _differences(m, fno, dv, to_dv, to_fno)
    if not differences and entry is not None and entry.dataverse.row_id == dv.row_id:
        return Decision(key, Kind.UNCHANGED)  # the ledger knew them equal: no entry to build (a deep copy a row)
    new = _entry(m, key, entry)
    _record_side(new, Side.FNO, fno, _readable(m, Side.FNO))
    _record_side(new, Side.DATAVERSE, dv, _readable(m, Side.DATAVERSE))
    if not differences:
        return Decision(key, Kind.LINKED, entry=new)
    into: dict[Side, list[FieldMap]] = {Side.FNO: [], Side.DATAVERSE: []}
    contested: dict[str, dict[str, Any]] = {}
    master = _master(m, fno, dv)
    for f, only in differences:
        if only is not None:
            into[only].append(f)
            continue
        fno_changed = _changed_since(entry, Side.FNO, f, fno)
        dv_changed = _changed_since(entry, Side.DATAVERSE, f, dv)
        if (
            unwritten
            and (fno_changed is False) != (dv_changed is False)
            and _unwritten(entry, Side.DATAVERSE if fno_changed is False else Side.FNO, f, fno, dv)
        ):
            # An earlier step saved this entry and stopped before its write landed: the side that differs from the
            # ledger, still holding what that step read there, is the one that never got the value, not one a
            # person changed — it is behind, not ahead.
            into[Side.DATAVERSE if fno_changed is False else Side.FNO].append(f)
        elif fno_changed and dv_changed is False:
            into[Side.DATAVERSE].append(f)
        elif dv_changed and fno_changed is False:
            into[Side.FNO].append(f)
        else:
            name = f.dataverse or f.fno or ""
            contested[name] = {"base": None if entry is None else entry.dataverse.values.get(name),
                               "fno": normalize(plain(fno.record.get(f.fno or ""))),
                               "dataverse": normalize(plain(dv.record.get(f.dataverse or "")))}  # fmt: skip
            if master is not None:
                into[master.other].append(f)
    conflict = None
    if contested:
        conflict = ConflictRecord(
            map=m.name, key=key, policy=f"initial_sync:{m.conflict.policy}", winner=str(master or "none"),
            fields=contested, source="sync", event_id=f"sync:{run_id}", status="resolved" if master else "open",
        )  # fmt: skip
    writes: list[Write] = []
    before: dict[str, Any] = {}  # what the targets hold now, of the columns written (`LedgerEntry.sync_before`)
    if into[Side.DATAVERSE]:
        values = {f.dataverse: to_dv.values.get(f.dataverse) for f in into[Side.DATAVERSE]  # F&O's empty: null
                  if f.dataverse is not None and not f.lookup}  # fmt: skip
        refs = {f.dataverse: to_dv.lookups[f.dataverse] for f in into[Side.DATAVERSE] if f.dataverse in to_dv.lookups}
        if values or refs:
            writes.append(Write(Side.DATAVERSE, False, dict(to_dv.key), values, refs, dv.etag, dv.row_id))
            before |= {f"dataverse:{c}": normalize(dv.record.get(c)) for c in (*values, *refs)}
            new.dataverse.values = {**new.dataverse.values, **{c: normalize(v) for c, v in values.items()}}
    if into[Side.FNO]:
        values = {f.fno: to_fno.values[f.fno] for f in into[Side.FNO] if f.fno in to_fno.values}
        if values:
            writes.append(Write(Side.FNO, False, dict(key), values, if_match=fno.etag))
            before |= {f"fno:{c}": normalize(fno.record.get(c)) for c in values}
            new.fno.values = {**new.fno.values, **{c: normalize(v) for c, v in values.items()}}
    new.sync_before = before or None
    behind = [w.into for w in writes]
    if conflict is not None and not writes:
        return Decision(key, Kind.CONFLICT, entry=None, conflict=conflict, detail="parked for a person")
    kind = Kind.CONFLICT if conflict is not None else Kind.UPDATED
    return Decision(key, kind, writes, new, conflict, behind=behind)
