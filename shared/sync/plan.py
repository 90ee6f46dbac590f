"""The pure planning step of apply: (change, ledger entry, target row if known, map) → plan. No I/O.

A plan says either why the change is skipped (stale, echo) or what to do: the target write (values, lookups, and the
condition it is made under), the columns to copy back into the source, the conflict to record, and the ledger entry
to save once the write is done (`settle`). The executor (`shared.sync.service`) carries plans out.

Optimistic writes: when the target row is not known (`current is None` and `read` is False) the plan assumes the
target is as the ledger last synced it and makes the write conditional on the ETag the ledger remembers (`If-Match`),
or, for a row the ledger has never seen, a guarded create (`If-None-Match: *`; F&O: POST). Either answers 412 when
the assumption is wrong; the executor then reads the row and plans again with it (the three-way path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events.model import ChangeEvent, Operation
from shared.ledger.model import ConflictRecord, LedgerEntry
from shared.maps.model import Side, TableMap
from shared.maps.transform import LookupRef, TargetRow, plain
from shared.sync.decide import fingerprint, is_newer, normalize, resolve
from shared.sync.rows import Current, Written

TAG_PREFIX = "bridge:"


@dataclass
class Write:
    """One conditional write into the target side."""

    values: dict[str, Any]
    lookups: Mapping[str, LookupRef | None]
    if_match: str | None  # an ETag; None with `create`: the row must not exist yet
    create: bool
    tag: str


@dataclass
class Plan:
    skip: tuple[str, str] | None = None  # (outcome, detail) when nothing is to be done
    write: Write | None = None
    back: set[str] = field(default_factory=set)  # target columns to copy back into the source
    conflict: ConflictRecord | None = None
    park: bool = False  # manual policy: nothing written, the conflict waits for a person
    detail: str = ""
    optimistic: bool = False  # the target row was assumed, not read


def skip_reason(
    entry: LedgerEntry | None,
    side: Side,
    event: ChangeEvent,
    source_version: str | None,
    seen: Mapping[str, Any],
    *,
    catch_up: bool = False,
) -> tuple[str, str] | None:
    """Stale (this event or a newer one was applied already) or an echo (nothing differs from what was synced)."""
    if entry is None:
        return None
    if (stale := stale_reason(entry, side, event, source_version, catch_up=catch_up)) is not None:
        return stale
    state = entry.side(side)
    # Normalised here too: an entry saved before `normalize` knew F&O's "" and 1900-01-01 for null holds them raw.
    if not entry.deleted and all(normalize(state.values.get(n)) == v for n, v in seen.items()):
        return "skipped-echo", "no value differs from what was last synced"
    return None


def stale_reason(
    entry: LedgerEntry | None, side: Side, event: ChangeEvent, source_version: str | None, *, catch_up: bool = False
) -> tuple[str, str] | None:
    """This event, or a newer version of the row, was applied already. A catch-up (the row as it is now, read
    because its side is `ahead`) may be of the very version recorded: it is not stale for that."""
    if entry is None:
        return None
    state = entry.side(side)
    fresh = is_newer(source_version, state.version) or (catch_up and source_version == state.version)
    if event.event_id == state.last_event or not fresh:
        return "skipped-stale", f"version {source_version} ≤ {state.version}"
    return None


def known_before_reread(entry: LedgerEntry | None, m: TableMap, event: ChangeEvent) -> tuple[str, str] | None:
    """An F&O change skipped before its re-read (no app request): redelivered, or the create of a row synced already
    — the bridge's own create seen back, or a person's create whose row was read since (a create that met it, or a
    later change's re-read). An update is always re-read: F&O sends no write tag, and its event drops fields set to
    null, so its values cannot prove it is our own write seen back."""
    if entry is None:
        return None
    state = entry.side(Side.FNO)
    if state.last_event == event.event_id:
        return "skipped-stale", "applied already (redelivered)"
    if entry.deleted or not state.values or state.ahead:
        return None  # ahead: its notification, stale or not, is owed a catch-up (`ApplyService`)
    if event.operation is Operation.CREATE:
        return "skipped-stale", "a create of a row synced already"
    return None


def integration_key(m: TableMap, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The row's key in F&O's terms (the company lower-cased, as F&O compares it), or None when a part is missing."""
    key: dict[str, Any] = {}
    for name in m.fno.key:
        value = plain(record.get(name))
        if value in (None, ""):
            return None
        key[name] = str(value).lower() if name == m.company_field(Side.FNO) else value
    return key


def can_assume(entry: LedgerEntry | None, into: Side) -> bool:
    """Whether the target can be written without reading it first: a row never synced (guarded create), or one whose
    ETag the ledger remembers (conditional update)."""
    return entry is None or (not entry.deleted and entry.side(into).etag is not None)


def flowing_back(m: TableMap, side: Side) -> set[str]:
    """The target's columns that can change on their own and flow back into the source."""
    into = side.other
    return {name for f in m.fields if m.flows(f, side) and (name := f.dataverse if into is Side.DATAVERSE else f.fno)}


def plan_change(
    m: TableMap,
    side: Side,
    event: ChangeEvent,
    row: TargetRow,
    key: dict[str, Any],
    entry: LedgerEntry | None,
    current: Current | None,
    *,
    read: bool,
) -> Plan:
    """`current` is the target row as read (None: not there) when `read`; otherwise unknown, and assumed to be as
    the ledger last synced it."""
    into = side.other
    proposed = {c: normalize(v) for c, v in row.values.items()}
    # As last synced, normalised as now (an older entry may hold F&O's "" or 1900-01-01 for what is null).
    base = (
        {c: normalize(v) for c, v in entry.side(into).values.items()}
        if entry is not None and not entry.deleted
        else None
    )
    columns = ((base or {}).keys() | flowing_back(m, side)) - row.key.keys()
    if read:
        now = fingerprint(current.record, proposed.keys() | columns) if current else None
    else:
        now = dict(base) if base is not None else None  # assumed: as last synced (the If-Match checks it)
    target_time = _time(current.modified) if current else None
    decision = resolve(m.conflict, side, proposed, now, base, columns, event.occurred_at, target_time)
    plan = Plan(back=set(decision.back), optimistic=not read)
    if decision.conflicts:
        winner = str(decision.winner) if decision.winner else "none"
        plan.conflict = ConflictRecord(
            map=m.name, key=key, policy=str(m.conflict.policy), winner=winner, fields=decision.conflicts,
            source=str(side), event_id=event.event_id, status="open" if decision.park else "resolved",
            changed_at=event.occurred_at,
        )  # fmt: skip
        plan.detail = f"conflict on {', '.join(sorted(decision.conflicts))}, {decision.winner} won"
    if decision.park:
        plan.park = True
        plan.detail = f"parked for a person: {', '.join(sorted(decision.conflicts))}"
        return plan
    deleted = entry is not None and entry.deleted
    exists = current is not None if read else entry is not None
    # A value the target already holds is not written again (two lanes syncing one row — a line healing its order
    # while the order's own change applies — would otherwise write the same values twice).
    values = {c: v for c, v in row.values.items() if c in decision.write and (now is None or now.get(c) != proposed[c])}
    lookups = row.lookups if (not exists or decision.write or deleted) else {}
    if not exists or values or lookups:
        if read:
            if_match = current.etag if current is not None else None
        else:
            if_match = entry.side(into).etag if entry is not None else None
        plan.write = Write(values, lookups, if_match, not exists, f"{TAG_PREFIX}{event.event_id}")
    return plan


def settle(
    plan: Plan,
    m: TableMap,
    side: Side,
    event: ChangeEvent,
    record: Mapping[str, Any],
    source_version: str | None,
    row: TargetRow,
    key: dict[str, Any],
    entry: LedgerEntry | None,
    current: Current | None,
    written: Written | None,
    source_tag: str | None = None,
) -> LedgerEntry:
    """The ledger entry after the plan's write (if any) is done: both sides as now synced."""
    into = side.other
    entry = entry or LedgerEntry(map=m.name, key=key)
    target = entry.side(into)
    if written is not None and plan.write is not None:
        if written.record is not None:
            target.values = {**target.values, **fingerprint(written.record, written.record)}
        else:
            before = fingerprint(current.record, current.record) if current else {}
            target.values = {**target.values, **before, **{c: normalize(v) for c, v in plan.write.values.items()},
                             **{c: normalize(v) for c, v in row.key.items()}}  # fmt: skip
        target.version = written.version or target.version
        target.etag = written.etag or None
        target.row_id = written.row_id or target.row_id
    elif current is not None:
        # Found holding every value already, so not written: recorded as synced at the version read, as a write would
        # have been. Without the version, an older notification of this row (a post-image from before) would not be
        # stale and would carry its old values back to the source. Its own changes since flow back (`plan.back`).
        target.values = {**target.values, **fingerprint(current.record, current.record)}
        target.etag = current.etag or target.etag
        target.row_id = target.row_id or current.row_id  # found, not written: still indexed
        if current.version and is_newer(current.version, target.version):
            target.version = current.version
    state = entry.side(side)
    state.values = {**state.values, **fingerprint(record, m.readable(side))}
    if source_version and is_newer(source_version, state.version):
        state.version = source_version
        state.etag = source_tag or source_etag(side, source_version, state.etag)
    state.ahead = False  # the row as of that version is synced now (a write-back may find it moved on again)
    state.last_event = event.event_id
    if event.row_id and not (side is Side.FNO and event.row_id.startswith("{")):
        state.row_id = state.row_id or event.row_id
    entry.deleted = False
    entry.conflict = plan.conflict  # recorded once this entry is saved; a redelivery completes it (`owed_conflict`)
    return entry


def owed_conflict(entry: LedgerEntry | None, event: ChangeEvent) -> ConflictRecord | None:
    """The conflict `event` met, when the ledger entry holds it: the change was applied, and its conflict record may
    not have been written (recording it again is a no-op)."""
    owed = entry.conflict if entry is not None else None
    return owed if owed is not None and owed.event_id == event.event_id else None


def source_etag(side: Side, version: str, known: str | None) -> str | None:
    """The source row's ETag at `version`, when its form is documented: a Dataverse row's ETag is its
    `versionnumber` (Microsoft Learn, "Perform conditional operations using the Web API": `W/"<versionnumber>"`).
    An F&O ETag is opaque, so the one known is kept only if it is of this version."""
    if side is Side.DATAVERSE and version.isdigit():
        return f'W/"{version}"'
    from shared.connectors.wire import etag_version

    return known if known is not None and etag_version(known) == version else None


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
