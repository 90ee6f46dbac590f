"""`ChangeEvent`: one row change from either app, in one canonical, JSON-safe form.

Canonical field values (what `fields` holds), so that both sources and every later stage agree:

| kind | form |
| --- | --- |
| text, whole number, boolean, null | plain JSON (`null` is an explicit null: the column was set empty) |
| decimal, float, money amount | `{"$type": "decimal", "value": "2154.32"}` — the exact digits, as text |
| money | `{"$type": "money", "value": "2154.32"}` |
| date/time | `{"$type": "datetime", "value": "2017-09-26T00:04:07+00:00"}` — ISO 8601, UTC |
| lookup | `{"$type": "lookup", "table": "systemuser", "id": "<guid>", "name": "..."}` |
| choice (option set; an F&O enum on a virtual table its metadata cannot decode) | `{"$type": "choice", "value": 1}` |
| F&O enum on a virtual table, decoded (`shared.events.enums`) | its symbol, as OData writes it: `"Yes"` |
| multi-select choice | `{"$type": "choices", "values": [1, 2]}` |
| entity collection (activity parties) | `{"$type": "entities", "entities": [{"table", "id", "fields"}]}` |

An absent column is simply not in `fields`; `changed_fields` lists the columns the change touched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.side import Side as Side

SCHEMA_VERSION: Literal[1] = 1
_EVENT_NAMESPACE = uuid.UUID("6f1c2f0e-4b8a-4c55-9a59-1b1d7d2b6a11")


class Operation(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ChangeEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic: the same notification delivered twice has the same id")
    source: Side
    entity: str = Field(description="Dataverse table logical name, or F&O data entity name")
    operation: Operation
    row_id: str = Field(description="Dataverse row GUID; F&O virtual-table id or natural key")
    keys: dict[str, JsonValue] = Field(default_factory=dict, description="Key values when known")
    company: str | None = Field(default=None, description="F&O legal entity (dataAreaId), lower case")
    fields: dict[str, JsonValue] = Field(default_factory=dict)
    changed_fields: list[str] = Field(default_factory=list)
    source_version: str | None = Field(default=None, description="RowVersion, versionnumber, ControlNumber…")
    occurred_at: datetime
    initiating_user: str | None = None
    user: str | None = None
    correlation_id: str | None = None
    write_tag: str | None = Field(default=None, description="The `tag` of the write that caused this change")
    reread_required: bool = Field(default=False, description="The payload was cut: apply must re-read the row")
    traceparent: str | None = Field(
        default=None,
        description="W3C trace context of the notification's ingest: apply continues its trace, so one operation id"
        " runs from the webhook through Service Bus (and a hold, a retry or a replay) to the target write",
    )
    ordering_key: str | None = Field(
        default=None,
        description="The synced row, the same from either side (map and the row's own key), so that both sides'"
        " changes to it travel in one session and are applied one at a time",
    )

    @property
    def row_identity(self) -> str:
        """Which source row this change is about; its changes must be applied in the order they happened."""
        return f"{self.source}:{self.entity}:{self.row_id}".lower()


@dataclass(frozen=True)
class Ignored:
    """A well-formed notification we acknowledge but do not sync (another message, an unmapped table, a test…)."""

    reason: str
    entity: str | None = None
    test: bool = False  # the F&O endpoint test message: answered 200, never queued


def event_id(*parts: object) -> str:
    """A stable id from the parts that identify one notification."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, "|".join("" if p is None else str(p) for p in parts)))
