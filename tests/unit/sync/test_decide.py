"""The pure decisions of apply: normalisation, staleness and three-way conflict resolution per policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.maps.model import Conflict, ConflictPolicy, Side
from shared.sync.decide import is_newer, normalize, resolve

BASE = {"name": "Original", "phone": "1", "city": "Oslo"}


def test_normalize_agrees_across_spellings() -> None:
    assert normalize(10.5) == normalize("10.5") != normalize("10.50")  # a string stays text
    assert normalize(Decimal("10.500")) == normalize({"$type": "decimal", "value": "10.5"}) == normalize(10.5)
    assert normalize({"$type": "lookup", "id": "ABC"}) == "abc"
    assert normalize({"$type": "choice", "value": 3}) == normalize(3) == "3"
    assert normalize(True) is True and normalize(None) is None


def test_versions_only_grow_and_unknown_never_stale() -> None:
    assert is_newer("12", "11") and not is_newer("11", "11") and not is_newer("3", "11")
    assert is_newer(None, "5") and is_newer("5", None) and is_newer("abc", "5")


def test_first_sync_writes_everything() -> None:
    r = resolve(Conflict(), Side.FNO, {"name": "A"}, None, None, [])
    assert r.write == {"name"} and not r.conflicts


def test_changes_on_different_fields_merge() -> None:
    current = BASE | {"phone": "2"}
    r = resolve(Conflict(policy=ConflictPolicy.MERGE), Side.FNO, BASE | {"name": "New"}, current, BASE, BASE)
    assert r.write == {"name"} and r.back == {"phone"} and not r.conflicts


def test_same_change_on_both_sides_is_no_conflict() -> None:
    r = resolve(Conflict(), Side.FNO, BASE | {"name": "X"}, BASE | {"name": "X"}, BASE, BASE)
    assert not r.write and not r.back and not r.conflicts


def _overlap(conflict: Conflict, source: Side = Side.FNO, **times: datetime) -> object:
    return resolve(conflict, source, BASE | {"name": "S"}, BASE | {"name": "T"}, BASE, BASE,
                   times.get("source_time"), times.get("target_time"))  # fmt: skip


def test_master_policy() -> None:
    won = _overlap(Conflict(policy=ConflictPolicy.MASTER, master=Side.FNO))
    lost = _overlap(Conflict(policy=ConflictPolicy.MASTER, master=Side.DATAVERSE))
    assert won.write == {"name"} and won.winner is Side.FNO  # type: ignore[attr-defined]
    assert lost.back == {"name"} and not lost.write and lost.winner is Side.DATAVERSE  # type: ignore[attr-defined]
    assert won.conflicts == {"name": {"base": "Original", "source": "S", "target": "T"}}  # type: ignore[attr-defined]


def test_last_writer_wins_by_source_timestamps() -> None:
    now = datetime.now(UTC)
    later_source = _overlap(Conflict(policy=ConflictPolicy.LAST_WRITER_WINS, master=Side.DATAVERSE),
                            source_time=now, target_time=now - timedelta(seconds=5))  # fmt: skip
    later_target = _overlap(Conflict(policy=ConflictPolicy.LAST_WRITER_WINS, master=Side.FNO),
                            source_time=now - timedelta(seconds=5), target_time=now)  # fmt: skip
    assert later_source.winner is Side.FNO and later_source.write == {"name"}  # type: ignore[attr-defined]
    assert later_target.winner is Side.DATAVERSE and later_target.back == {"name"}  # type: ignore[attr-defined]


def test_manual_parks_and_writes_nothing() -> None:
    r = _overlap(Conflict(policy=ConflictPolicy.MANUAL))
    assert r.park and not r.write and not r.back and r.conflicts  # type: ignore[attr-defined]


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.text(max_size=3)),
       st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.text(max_size=3)),
       st.sampled_from(list(ConflictPolicy)), st.sampled_from(list(Side)))  # fmt: skip
def test_no_change_is_ever_silently_dropped(
    source: dict[str, str], target: dict[str, str], policy: ConflictPolicy, side: Side
) -> None:
    base = {"a": "", "b": "", "c": "", "d": ""}
    proposed, current = base | source, base | target
    r = resolve(Conflict(policy=policy), side, proposed, current, base, base)
    for column in base:
        source_changed = proposed[column] != base[column]
        target_changed = current[column] != base[column]
        if source_changed and target_changed and proposed[column] != current[column]:
            assert column in r.conflicts  # a real conflict is always recorded
        elif source_changed and not target_changed:
            assert column in r.write or r.park
        elif target_changed and not source_changed:
            assert column in r.back or r.park


def test_f_and_os_empty_text_and_date_are_the_nothing_dataverse_answers_as_null() -> None:
    """F&O answers every field, an empty text as "" and an empty date as 1900-01-01 (a real CustomerGroups GET;
    "Entity modeling": an empty F&O date is null in Dataverse): compared with Dataverse's null they are the same, or
    such columns would always look changed (fidelity audit)."""
    from shared.maps.loader import load_maps
    from shared.maps.model import Side
    from shared.maps.transform import transform
    from shared.sync.decide import normalize

    assert normalize("") is None and normalize("1900-01-01") is None and normalize("1900-01-01T12:00:00Z") is None
    assert normalize("1900-01-01T00:00:00+00:00") is None and normalize("1900-01-02") == "1900-01-02"
    assert normalize("1900-01-01 is a date") == "1900-01-01 is a date" and normalize("Contoso") == "Contoso"
    maps = load_maps()
    for compiled in maps.maps.values():
        dates = [f for f in compiled.map.fields if f.type in ("date", "datetime") and f.dataverse and f.fno]
        for f in dates:
            record = {k: "x" for k in compiled.map.fno.key} | {f.fno: "1900-01-01T12:00:00Z"}
            out = transform(compiled, Side.FNO, record, maps.maps)
            assert out.values.get(f.dataverse) is None, (compiled.map.name, f.fno)


def test_one_instant_is_one_value_whichever_form_it_came_in() -> None:
    """OData answers `…Z`; a `/Date(ms)/` in an event decodes to `…+00:00` with milliseconds: the same instant, or the
    bridge's own write would not be known when it comes back (fidelity audit)."""
    from shared.sync.decide import normalize

    assert normalize("2026-11-30T08:58:30Z") == normalize("2026-11-30T08:58:30+00:00") == "2026-11-30T08:58:30Z"
    assert normalize("2026-11-30T08:58:30.000+00:00") == "2026-11-30T08:58:30Z"
    assert normalize("2026-11-30T09:58:30+01:00") == "2026-11-30T08:58:30Z"
    assert normalize({"$type": "datetime", "value": "2026-11-30T08:58:30+00:00"}) == "2026-11-30T08:58:30Z"
    assert normalize("2026-11-30") == "2026-11-30" and normalize("Contoso 2026-11-30T0") == "Contoso 2026-11-30T0"
