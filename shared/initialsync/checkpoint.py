"""A run's checkpoint as Table Storage properties, pure: the run's JSON cut into string properties that each fit.

Table Storage holds a string property of at most 64 KiB — 32K characters of UTF-16 — and an entity of at most 1 MiB
(Microsoft Learn, "Understanding the Table service data model"); a larger one is refused (`PropertyValueTooLarge`,
`EntityTooLarge`), and a checkpoint that cannot be saved fails its step after its writes landed. So the JSON is cut
into parts (`Run`, `Run1`, `Run2`, …, their count in `Parts`) and bounded as a whole: a run's samples — the only
part that grows with the data, not with the number of maps — carry values cut short (`brief`), and if the whole
still would not fit (hundreds of maps), the samples give way first, then the maps' messages.
"""

from __future__ import annotations

from typing import Any

from shared.initialsync.model import DriftRecord, RunState

PART_CHARS = 16_000  # a part's characters: ≤ 64 KiB of UTF-16 even if every one took two code units
ENTITY_BYTES = 900_000  # the parts' UTF-16 bytes together: under the 1 MiB entity, with room for keys and metadata
VALUE_CHARS = 200  # of a value or message kept in a sample (the report shows what kind of row, not all of it)
MESSAGE_CHARS = 2_000  # of a run's or a map's message (an app's answer quoted in an exception)


def brief(value: Any, limit: int = VALUE_CHARS) -> Any:
    """`value`, a text cut to `limit` characters (marked with …); anything else as it is."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def _size(text: str) -> int:
    return len(text.encode("utf-16-le"))


def encode(run: RunState) -> dict[str, Any]:
    """The run as entity properties, each within Table Storage's limits, the whole within an entity's."""
    text = run.model_dump_json()
    if _size(text) > ENTITY_BYTES:  # bounded inputs make this rare: the samples give way, then the messages
        run = run.model_copy(deep=True)
        for p in run.progress.values():
            p.samples = {kind: [] for kind in p.samples}
        text = run.model_dump_json()
        if _size(text) > ENTITY_BYTES:
            for p in run.progress.values():
                p.message = brief(p.message, 200)
            run.message = brief(run.message, 200)
            text = run.model_dump_json()
    parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    out: dict[str, Any] = {"Parts": len(parts)}
    for n, part in enumerate(parts):
        out[f"Run{n or ''}"] = part
    return out


def decode(entity: dict[str, Any]) -> RunState:
    """The run from its entity's properties (one `Run` property, as saved before the parts: `Parts` absent)."""
    count = int(entity.get("Parts") or 1)
    return RunState.model_validate_json("".join(str(entity[f"Run{n or ''}"]) for n in range(count)))


def drift_json(record: DriftRecord) -> str:
    """A drift entry's JSON for its one string property: the values written, each cut short only if the whole would
    not fit (a wide row of long texts)."""
    text = record.model_dump_json()
    if _size(text) <= 2 * PART_CHARS:
        return text
    return record.model_copy(update={"values": {k: brief(v) for k, v in record.values.items()}}).model_dump_json()
