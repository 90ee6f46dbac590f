"""A sync run's state as it is checkpointed and reported: per map and side, what was read and done."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator


class Mode(StrEnum):
    SYNC = "sync"  # compare and write
    PLAN = "plan"  # compare, write nothing: counts and samples
    RECONCILE = "reconcile"  # compare and write, each repaired row recorded as drift


class SideCounts(BaseModel):
    """Per side of a map: `read` rows read within the map's scope; `created` / `updated` rows written into this
    side; `linked` pairs found equal and recorded in the ledger; `unchanged` pairs the ledger already knew equal;
    `conflicts` pairs different on both sides (settled by the map, recorded); `errors` rows that could not be written
    into this side (each in the error log); `skipped` rows live sync knows newer (left to it); `deleted` linked rows
    deleted (or deactivated) in this side because they were deleted in the other (the map's `delete`)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0
    unchanged: int = 0
    conflicts: int = 0
    errors: int = 0
    skipped: int = 0
    deleted: int = 0


class MapProgress(BaseModel):
    map: str
    state: str = "pending"  # pending | reading | writing | done | failed | held (paused or invalid: not written)
    fno: SideCounts = Field(default_factory=SideCounts)
    dataverse: SideCounts = Field(default_factory=SideCounts)
    planned: int = 0  # keys compared
    processed: int = 0  # keys whose writes are done
    cursor: str | None = None  # the checkpoint: the last key done (keys are worked through in order)
    # Key ranges (first, last, mark) of chunks a step began and has not finished: their ledger entries may be saved
    # with writes that never landed (the host died). The step after treats an app differing from such an entry as
    # behind only where the entry carries the chunk's mark (`LedgerEntry.sync_chunk`): the chunk really saved it —
    # and only in a column still holding what the chunk read there (`LedgerEntry.sync_before`): never written.
    in_flight: list[tuple[str, str, str]] = Field(default_factory=list)
    steps: int = 0
    compared: str = "full"  # full | changes (a reconciliation after the first: the rows changed since it)
    delta_link: str | None = None  # Dataverse change tracking as of this run's first read of the map
    samples: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str = ""

    @field_validator("in_flight", mode="before")
    @classmethod
    def _marked(cls, value: Any) -> Any:
        """A checkpoint from before chunks were marked: (first, last) with no mark, so no entry is trusted."""
        return [(*r, "") if isinstance(r, list | tuple) and len(r) == 2 else r for r in value or []]

    def side(self, side: str) -> SideCounts:
        return self.fno if side == "fno" else self.dataverse

    def report(self) -> dict[str, Any]:
        """The counts with rows/s and an estimate of the time left."""
        out = self.model_dump(mode="json")
        if self.started_at is not None:
            end = self.finished_at or datetime.now(UTC)
            seconds = max((end - self.started_at).total_seconds(), 1e-3)
            rate = self.processed / seconds
            out["seconds"] = round(seconds, 2)
            out["rows_per_second"] = round(rate, 1)
            left = max(self.planned - self.processed, 0)
            out["estimated_seconds_left"] = 0 if self.state == "done" else (round(left / rate, 1) if rate else None)
        return out


class RunState(BaseModel):
    run_id: str
    mode: Mode
    maps: list[str]
    state: str = "queued"  # queued | running | done | failed | held (a map held: rerun-failed carries it on)
    only_failed: bool = False  # a rerun of the rows in the error log
    progress: dict[str, MapProgress] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    message: str = ""
    steps: int = 0  # queued steps so far (each bounded in time, continuing from the cursors)
    failures: int = 0  # deliveries of the current step that failed in a row (reset by a step that succeeds)
    etag: str | None = Field(default=None, exclude=True)  # Table Storage's, as read: for a conditional save

    def report(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "mode": str(self.mode), "state": self.state, "maps": self.maps,
            "only_failed": self.only_failed, "steps": self.steps, "failures": self.failures,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(), "message": self.message,
            "progress": {name: p.report() for name, p in self.progress.items()},
        }  # fmt: skip


class DriftRecord(BaseModel):
    """A row reconciliation found apart and repaired: which side was behind, and the values written into it."""

    map: str
    key: dict[str, Any]
    behind: str  # fno | dataverse
    values: dict[str, Any]
    action: str = "update"  # create | update | delete | deactivate (the row was deleted in the other app)
    run_id: str
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
