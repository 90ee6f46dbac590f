"""The pure decisions of apply: what counts as a change, an echo, a stale event, and who wins a conflict.

Values are compared in a normalised form (`normalize`) so that both apps' spellings of the same value agree:
`10.5`, `"10.50"` and `Decimal("10.500")` are one number; a lookup is the id it points at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.maps.model import Conflict, ConflictPolicy, Side
from shared.maps.transform import plain

_MISSING = object()


def normalize(value: Any) -> Any:
    """One comparable, JSON-safe form per value."""
    if isinstance(value, dict) and value.get("$type") == "lookup":
        return str(value.get("id") or "").lower() or None
    value = plain(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value)).normalize()
        except InvalidOperation:
            return str(value)
        return format(number, "f")
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        # F&O answers an empty text as "" and an empty date as 1900-01-01 where Dataverse answers null: the same
        # nothing ("Entity modeling", Microsoft Learn), or every such column would look changed on one side.
        if not value or (value.startswith("1900-01-01") and (len(value) == 10 or value[10] == "T")):
            return None
        if 20 <= len(value) <= 35 and value[10] == "T" and value[4] == "-" and value[-1] in "Z0":
            return _instant(value)
        return value
    return str(value)


def _instant(text: str) -> str:
    """A UTC date-time in one form: OData answers `…Z`, a `/Date(ms)/` in an event decodes to `…+00:00` (and may
    carry milliseconds) — the same instant, or a row's own write would not be known when it comes back."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if moment.tzinfo is None:
        return text
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def fingerprint(record: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The normalised values of `names` that `record` carries (absent stays absent)."""
    return {n: normalize(record[n]) for n in names if n in record}


def changes_since(values: Mapping[str, Any], base: Mapping[str, Any]) -> set[str]:
    return {n for n, v in values.items() if base.get(n, _MISSING) != v}


def is_newer(version: str | None, than: str | None) -> bool:
    """Dataverse row versions are numbers that only grow. An F&O version is an opaque ETag token (`wire.etag_version`:
    RecVersion is random), so it is "newer" when it differs — the same token is the same state of the row, a different
    one a change, never an older one (F&O changes are read as the row is now). Unknown never makes an event stale."""
    if not version or not than:
        return True
    if version.isdigit() and than.isdigit():
        return int(version) > int(than)
    if "," in version and "," in than:  # two F&O tokens ('<RecVersion>,<RecId>…'): the same one is the same state
        return version != than
    return True  # anything else (a Dataverse `modifiedon` of a change queued before versions came from images)


@dataclass
class Resolution:
    """Which target columns to write from the source, which to copy back from the target into the source, and the
    conflicts found on the way. `park` (manual policy): write nothing, leave the row for a person."""

    write: set[str] = field(default_factory=set)
    back: set[str] = field(default_factory=set)
    conflicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    winner: Side | None = None
    park: bool = False


def resolve(
    conflict: Conflict,
    source: Side,
    proposed: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    base: Mapping[str, Any] | None,
    columns: Iterable[str],
    source_time: datetime | None = None,
    target_time: datetime | None = None,
) -> Resolution:
    """Three-way: `proposed` (the source's values as target columns), `current` (the target row now) and `base`
    (the target as we last synced it), all normalised. Changes on one side only flow; the same column changed on
    both sides to different values is a conflict, settled by the map's policy."""
    if current is None or base is None:  # a new row, or one we never synced: nothing to conflict with
        return Resolution(write=set(proposed), winner=source)
    source_changed = changes_since(proposed, base)
    # A column absent from the base was empty when last synced.
    target_changed = {c for c in columns if c in current and current.get(c) != base.get(c)}
    overlap = {c for c in source_changed & target_changed if proposed[c] != current.get(c)}
    agreed = {c for c in source_changed & target_changed if proposed[c] == current.get(c)}
    result = Resolution(write=source_changed - target_changed, back=target_changed - source_changed - agreed)
    if not overlap:
        return result
    result.conflicts = {c: {"base": base.get(c), "source": proposed[c], "target": current.get(c)} for c in overlap}
    policy = conflict.policy
    if policy is ConflictPolicy.MANUAL:
        return Resolution(conflicts=result.conflicts, park=True)
    winner = conflict.master
    if policy is ConflictPolicy.LAST_WRITER_WINS and source_time is not None and target_time is not None:
        winner = source if source_time >= target_time else source.other
    result.winner = winner
    if winner is source:
        result.write |= overlap
    else:
        result.back |= overlap
    return result
