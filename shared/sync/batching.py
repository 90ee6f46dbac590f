"""A batch of changes (one session lane's messages): repeated changes of a row merged, and the writes waiting to go
out together. Pure data and functions; the executor is `shared.sync.service`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.events.model import ChangeEvent, Operation
from shared.ledger.model import LedgerEntry
from shared.maps.model import Side
from shared.maps.transform import CompiledMap, TargetRow
from shared.ops.ids import is_replay, original_event_id
from shared.sync.decide import is_newer
from shared.sync.outcome import Message, Outcome
from shared.sync.plan import TAG_PREFIX, Plan
from shared.sync.rows import Current


@dataclass
class Unit:
    """One change of a batch (repeated changes of a row merged into it) and what became of it."""

    event: ChangeEvent
    delivery_count: int
    outcomes: list[Outcome] = field(default_factory=list)
    failure: Exception | None = None


@dataclass
class Change:
    """A change planned, its write to do."""

    compiled: CompiledMap
    side: Side
    event: ChangeEvent
    depth: int
    record: dict[str, Any]
    source_version: str | None
    source_tag: str | None
    row: TargetRow
    key: dict[str, Any]
    entry: LedgerEntry | None
    current: Current | None
    plan: Plan


def row_of(event: ChangeEvent) -> tuple[str, str, str]:
    return (str(event.source), event.entity, event.row_id)


def merge(earlier: ChangeEvent, later: ChangeEvent) -> ChangeEvent:
    """Two changes of one row in one batch, as one: the row's latest state (the later change's values over the
    earlier's), under the later change's id and version. "Later" is by row version, not by place in the batch."""
    return later.model_copy(
        update={
            "fields": {**earlier.fields, **later.fields},
            "keys": {**earlier.keys, **later.keys},
            "changed_fields": sorted(set(earlier.changed_fields) | set(later.changed_fields)),
            "reread_required": earlier.reread_required or later.reread_required,
        }
    )


def _older(event: ChangeEvent, than: ChangeEvent) -> bool:
    """Whether `event` is of an older version of the row than `than` (row versions only grow; unknown: not older)."""
    return not is_newer(event.source_version, than.source_version) and event.source_version != than.source_version


def _as_replay(merged: ChangeEvent, other: ChangeEvent) -> ChangeEvent:
    """A change and an operator's replay of it (`<id>~replay<n>`) met in one batch — the original still being
    redelivered when the replay came: the merged change carries the replay's id, so its outcome reaches the error
    entry the replay was for (under the original's id, or as a superseded change, it left the entry `replaying`)."""
    if is_replay(other.event_id) and original_event_id(other.event_id) == original_event_id(merged.event_id):
        return merged.model_copy(update={"event_id": other.event_id})
    return merged


def coalesce(
    messages: Sequence[Message], alone: Sequence[bool] | None = None
) -> list[tuple[ChangeEvent, int, list[int]]]:
    """The batch's changes in order, a row changed several times (no delete between) merged into its newest change
    by row version, not by place (delivery may be shuffled): (change, delivery count, the messages it stands for,
    the newest last). A change marked `alone` (its map holds changes) is never merged: each held change is released
    as it came; nor is the echo of our own write."""
    units: list[tuple[ChangeEvent, int, list[int]] | None] = []
    open_: dict[tuple[str, str, str], int] = {}
    for i, message in enumerate(messages):
        event = message.event
        row = row_of(event)
        if event.write_tag and event.write_tag.startswith(TAG_PREFIX):
            # Our own write, seen from its app: skipped as it is, never merged. Merged, its tag would hide the
            # people's changes merged into it (a write-back's echo, newest, swallowed the change it came after).
            units.append((event, message.delivery_count, [i]))
            continue
        before = open_.pop(row, None)
        if alone is not None and alone[i]:
            units.append((event, message.delivery_count, [i]))
            continue
        if event.operation is not Operation.DELETE and before is not None and event.row_id:
            earlier = units[before]
            assert earlier is not None
            units[before] = None
            count = max(earlier[1], message.delivery_count)
            if _older(event, earlier[0]):  # shuffled delivery: the batch's later message holds the older state
                units.append(
                    (_as_replay(merge(event, earlier[0]), event), count, [*earlier[2][:-1], i, earlier[2][-1]])
                )
            else:
                units.append((_as_replay(merge(earlier[0], event), earlier[0]), count, [*earlier[2], i]))
        else:
            units.append((event, message.delivery_count, [i]))
        if event.operation is not Operation.DELETE and event.row_id:
            open_[row] = len(units) - 1
    return [u for u in units if u is not None]


class Batch:
    """Writes waiting to go out together, one `$batch` per map and target; the batch's source rows read together."""

    def __init__(self) -> None:
        self.pending: list[tuple[Change, Unit]] = []
        self.keys: set[tuple[str, str]] = set()
        self.reads: dict[tuple[str, str], Current] = {}  # (map, row_slot(key)) → the source row as read
        # (map, key_text(key)) → the ledger entry read ahead for an F&O change's check before its re-read
        self.entries: dict[tuple[str, str], LedgerEntry | None] = {}

    def holds(self, map_name: str, key: Mapping[str, Any]) -> bool:
        return (map_name, json.dumps(key, sort_keys=True, default=str)) in self.keys

    def add(self, change: Change, unit: Unit) -> None:
        self.pending.append((change, unit))
        self.keys.add((change.compiled.map.name, json.dumps(change.key, sort_keys=True, default=str)))
