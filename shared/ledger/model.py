"""What the ledger knows about one synced row (one entity per map and integration key)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from shared.maps.model import Side

_PLAIN = re.compile(r"[A-Za-z0-9=|\-_.~ @:,;!$&()*+']*\Z")  # what `quote` below leaves as it is


def key_text(key: dict[str, Any]) -> str:
    """The integration key as a Table Storage RowKey: stable order, case-folded, forbidden characters escaped."""
    text = "|".join(f"{name}={str(value).lower()}" for name, value in sorted(key.items()))
    return text if _PLAIN.match(text) else quote(text, safe="=|-_.~ @:,;!$&()*+'")


class ConflictRecord(BaseModel):
    map: str
    key: dict[str, Any]
    policy: str
    winner: str  # fno | dataverse | none (manual: parked)
    fields: dict[str, dict[str, Any]]  # target column → {base, source, target}
    source: str
    event_id: str
    status: str = "resolved"  # resolved | open (manual)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    changed_at: datetime | None = None  # when the change that met the conflict was made (apply's conflicts)

    def row_key(self) -> str:
        """Its RowKey in the conflicts table: the time (of the change, else of the record) in nanoseconds, then the
        event id. The same conflict has the same key, so recording it again — a redelivered change — is a no-op."""
        at = self.changed_at or self.at
        return f"{int(at.timestamp()) * 10**9 + at.microsecond * 1000:020d}-{self.event_id}"


class SideState(BaseModel):
    row_id: str | None = None  # Dataverse GUID / F&O virtual id, when known
    version: str | None = None  # the last version of this side we synced (applied from it, or wrote into it)
    etag: str | None = None  # the row's ETag at that version, when known: the next write into it is conditional on it
    values: dict[str, Any] = Field(default_factory=dict)  # normalised values of this side as last synced
    last_event: str | None = None
    # The row at `version` holds changes of its own not synced to the other side yet (a write-back found it had moved
    # on). Its older notifications are stale, so the next one, stale or not, syncs the row as it is now.
    ahead: bool = False


class LedgerEntry(BaseModel):
    map: str
    key: dict[str, Any]  # the integration key, in F&O field names
    fno: SideState = Field(default_factory=SideState)
    dataverse: SideState = Field(default_factory=SideState)
    deleted: bool = False
    # The conflict its last change met, kept with the entry (saved in one write) until the next change: a change
    # whose conflict record failed after the entry was saved finds it here when redelivered, and records it then.
    conflict: ConflictRecord | None = None
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The sync-run chunk that saved this entry ahead of its writes (`MapProgress.in_flight`): a step resuming a dead
    # one trusts an entry to hold values that chunk meant to write only when it carries that chunk's mark.
    sync_chunk: str | None = None
    # What the app written into held, as that chunk read it, of each column it was about to write ("<side>:<column>"):
    # an app still holding that value never got the write (and nobody changed it since).
    sync_before: dict[str, Any] | None = None
    etag: str | None = Field(default=None, exclude=True)  # Table Storage's, for optimistic concurrency
    indexed: set[tuple[Side, str]] = Field(default_factory=set, exclude=True)  # row ids already in the id index

    def side(self, side: Side) -> SideState:
        return self.fno if side is Side.FNO else self.dataverse


# A row a sync run could not write is logged under `sync:<map>:<key>` (`shared.initialsync.run.error_id`): its run
# reports it and `rerun-failed` retries it; it is no change to replay, and no sign that live sync is failing.
SYNC_RUN_ERROR = "sync:"


def from_sync_run(event_id: str) -> bool:
    return event_id.startswith(SYNC_RUN_ERROR)


class ErrorRecord(BaseModel):
    map: str
    event_id: str
    event: dict[str, Any]
    request: str
    message: str
    status: int | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
