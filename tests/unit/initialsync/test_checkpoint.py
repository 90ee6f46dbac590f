"""A run's checkpoint always fits Table Storage: a string property holds at most 32K characters (64 KiB of UTF-16)
and an entity at most 1 MiB (Microsoft Learn, "Understanding the Table service data model"). A run's samples of rich
rows passed 32K characters and the whole checkpoint was refused (PropertyValueTooLarge) after its writes landed
(review finding 2)."""

from __future__ import annotations

from typing import Any

from shared.initialsync import checkpoint
from shared.initialsync.model import DriftRecord, MapProgress, Mode, RunState
from shared.initialsync.plan import Decision, Kind, Write
from shared.initialsync.run import SyncRunner
from shared.maps.model import Side

STRING_LIMIT = 32 * 1024  # UTF-16 code units of one string property
ENTITY_LIMIT = 1024 * 1024  # bytes of one entity


def _fits(properties: dict[str, Any]) -> bool:
    texts = [v for v in properties.values() if isinstance(v, str)]
    return (
        all(len(t.encode("utf-16-le")) // 2 <= STRING_LIMIT for t in texts)
        and sum(len(t.encode("utf-16-le")) for t in texts) < ENTITY_LIMIT - 10_000
    )


def _rich(maps: int, value: str) -> RunState:
    names = [f"map{n}" for n in range(maps)]
    run = RunState(run_id="r1", mode=Mode.PLAN, maps=names, message="x" * 50_000)
    row = {f"column_{n}": value for n in range(45)}
    for name in names:
        progress = run.progress[name] = MapProgress(map=name, message="y" * 10_000)
        for kind in ("created", "updated", "linked", "conflict", "error", "skipped", "unchanged"):
            progress.samples[kind] = [
                {"key": {"dataAreaId": "usmf", "CustomerAccount": f"C{i}"}, "writes": [{"into": "dataverse",
                 "values": row}]} for i in range(5)
            ]  # fmt: skip
    return run


def test_a_run_with_rich_samples_is_saved_in_parts_and_read_back_whole() -> None:
    run = _rich(1, "a realistic value of a customer's address or contact line")
    assert len(run.model_dump_json()) > STRING_LIMIT  # one property would be refused
    properties = checkpoint.encode(run)
    assert properties["Parts"] > 1 and _fits(properties)
    assert checkpoint.decode(properties).model_dump() == run.model_dump()


def test_a_checkpoint_of_very_many_maps_or_wide_characters_still_fits() -> None:
    for run in (_rich(120, "v" * 30), _rich(3, "\U0001d518" * 2_000)):  # (outside the BMP: two UTF-16 units each)
        properties = checkpoint.encode(run)
        assert _fits(properties)
        again = checkpoint.decode(properties)
        assert again.maps == run.maps and set(again.progress) == set(run.progress)


def test_a_checkpoint_saved_before_the_parts_is_read() -> None:
    run = RunState(run_id="r2", mode=Mode.SYNC, maps=["customers"])
    assert checkpoint.decode({"Run": run.model_dump_json()}).run_id == "r2"


def test_a_sample_keeps_values_and_errors_short() -> None:
    state = MapProgress(map="customers")
    write = Write(Side.DATAVERSE, True, {"accountnumber": "C1"}, {"description": "z" * 100_000})
    SyncRunner._count(state, Decision({"CustomerAccount": "C1"}, Kind.CREATED, [write]))
    SyncRunner._count(state, Decision({"CustomerAccount": "C2"}, Kind.ERROR, error="e" * 100_000))
    [created] = state.samples["created"]
    assert len(created["writes"][0]["values"]["description"]) <= checkpoint.VALUE_CHARS
    assert len(state.samples["error"][0]["error"]) <= checkpoint.MESSAGE_CHARS


def test_a_drift_entry_of_a_wide_row_fits_one_property_and_a_narrow_one_is_kept_whole() -> None:
    wide = DriftRecord(map="customers", key={"CustomerAccount": "W1"}, behind="dataverse", run_id="r",
                       values={f"column_{n}": "w" * 4_000 for n in range(20)})  # fmt: skip
    assert len(wide.model_dump_json()) > STRING_LIMIT
    assert _fits({"Record": checkpoint.drift_json(wide)})
    narrow = wide.model_copy(update={"values": {"name": "n" * 500}})
    assert checkpoint.drift_json(narrow) == narrow.model_dump_json()
