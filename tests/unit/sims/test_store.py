"""The simulators' store: a `$batch` is one transaction, each change set in it all or nothing — undone alone when it
fails, whatever it wrote (inserts undone by hand, anything else rolled back to the savepoint taken before it), the
change sets before and after it written; an insert whose id or key is taken writes nothing."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from local.sims.store import Store, StoredRow, Taken, key_text


class Refused(Exception):
    pass


def _state(store: Store) -> list[tuple[object, ...]]:
    """Every row in insertion order (rowid), with its version and modified time, and every tombstone."""
    rows: list[tuple[object, ...]] = [
        (r.entity_set, r.id, r.key, r.data, r.version, r.modified) for s in ("a", "b") for r in store.all(s)
    ]
    return rows + [("tombstone", s, i) for s in ("a", "b") for i in store.changed_since(s, 0)[1]]


def _row(store: Store, row_id: str, entity_set: str = "a") -> StoredRow:
    row = store.get(entity_set, row_id)
    assert row is not None
    return row


@pytest.fixture(params=["memory", "file"])
def path(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return ":memory:" if request.param == "memory" else str(tmp_path / "sim.db")


def _seeded(path: str) -> Store:
    store = Store(path)
    with store.transaction():
        for n in range(4):
            store.insert("a", f"r{n}", key_text({"k": f"K{n}"}, ["k"]), {"k": f"K{n}", "n": n})
    return store


def test_a_failed_change_set_is_undone_alone_whatever_it_wrote(path: str) -> None:
    store = _seeded(path)
    before = _state(store)
    epoch = store.generation("a")[0]
    with store.batch():
        with store.change_set():
            store.insert("a", "first", key_text({"k": "F"}, ["k"]), {"k": "F"})
        with pytest.raises(Refused), store.change_set():
            store.insert("a", "new1", key_text({"k": "N1"}, ["k"]), {"k": "N1", "money": Decimal("1.50")})
            store.update(_row(store, "r1"), {"k": "K1", "n": 100})  # the savepoint is taken here
            store.insert("b", "new2", key_text({"k": "N2"}, ["k"]), {"k": "N2"})
            store.delete(_row(store, "r2"))
            store.update(_row(store, "new1"), {"k": "N1", "changed": True})  # a row it inserted, then changed
            store.delete(_row(store, "r3"))
            store.insert("a", "r3", key_text({"k": "K3"}, ["k"]), {"k": "K3", "again": True})  # deleted, made anew
            raise Refused
        with store.change_set():
            store.insert("a", "last", key_text({"k": "L"}, ["k"]), {"k": "L"})
    after = _state(store)
    assert [r for r in after if r[1] not in ("first", "last")] == before  # rows, versions, order, no tombstone
    assert [r[1] for r in after if r[1] in ("first", "last")] == ["first", "last"]
    assert _row(store, "last").version > _row(store, "first").version
    assert store.generation("a")[0] > epoch  # remembered answers are not trusted past a rollback


def test_a_change_set_that_only_inserts_is_undone_by_deleting_its_rows(path: str) -> None:
    store = _seeded(path)
    before = _state(store)
    with store.batch():
        with pytest.raises(Refused), store.change_set():
            store.insert("a", "x1", key_text({"k": "X1"}, ["k"]), {"k": "X1"})
            store.insert("b", "x2", key_text({"k": "X2"}, ["k"]), {"k": "X2"})
            raise Refused
        with store.change_set():  # the keys are free again
            store.insert("a", "x1", key_text({"k": "X1"}, ["k"]), {"k": "X1", "second": True})
    assert _state(store)[: len(before)] == before
    assert _row(store, "x1").data == {"k": "X1", "second": True} and store.get("b", "x2") is None


def test_a_taken_id_or_key_writes_nothing_and_gives_no_version(path: str) -> None:
    store = _seeded(path)
    version = store.version()
    with store.batch(), store.change_set():
        with pytest.raises(Taken):
            store.insert("a", "R0", key_text({"k": "new"}, ["k"]), {"k": "new"})  # ids compare lower-cased
        with pytest.raises(Taken):
            store.insert("a", "other", key_text({"k": "k0"}, ["k"]), {"k": "k0"})  # keys too
        assert store.version() == version
        row = store.insert("a", "fresh", key_text({"k": "fresh"}, ["k"]), {"k": "fresh"})
    assert row.version == version + 1 and store.count("a") == 5


def test_change_sets_nest_and_each_is_undone_alone(path: str) -> None:
    store = _seeded(path)
    with store.batch(), store.change_set():
        store.insert("a", "outer", key_text({"k": "O"}, ["k"]), {"k": "O"})
        with pytest.raises(Refused), store.change_set():
            store.insert("a", "inner", key_text({"k": "I"}, ["k"]), {"k": "I"})
            store.update(_row(store, "outer"), {"k": "O", "touched": True})
            raise Refused
        store.insert("a", "outer2", key_text({"k": "O2"}, ["k"]), {"k": "O2"})
    assert store.get("a", "inner") is None and _row(store, "outer").data == {"k": "O"} and store.get("a", "outer2")
    before = _state(store)
    with store.batch(), pytest.raises(Refused), store.change_set():
        store.insert("a", "gone1", key_text({"k": "G1"}, ["k"]), {"k": "G1"})
        with store.change_set():
            store.insert("a", "gone2", key_text({"k": "G2"}, ["k"]), {"k": "G2"})
            store.update(_row(store, "r0"), {"k": "K0", "n": -1})
        raise Refused
    assert _state(store) == before


def test_outside_a_batch_a_change_set_is_a_transaction_of_its_own(path: str) -> None:
    store = _seeded(path)
    before = _state(store)
    with pytest.raises(Refused), store.change_set():
        store.insert("a", "alone", key_text({"k": "A"}, ["k"]), {"k": "A"})
        store.update(_row(store, "r0"), {"k": "K0", "n": -1})
        raise Refused
    assert _state(store) == before
    with store.change_set():
        store.insert("a", "alone", key_text({"k": "A"}, ["k"]), {"k": "A"})
    assert store.get("a", "alone") is not None


def test_a_batch_keeps_what_was_written_before_an_unexpected_error(path: str) -> None:
    store = _seeded(path)
    with pytest.raises(RuntimeError), store.batch():
        with store.change_set():
            store.insert("a", "kept", key_text({"k": "kept"}, ["k"]), {"k": "kept"})
        with store.change_set():
            store.insert("a", "undone", key_text({"k": "undone"}, ["k"]), {"k": "undone"})
            raise RuntimeError("a bug in a dialect")
    assert store.get("a", "kept") is not None and store.get("a", "undone") is None
    with store.transaction():  # and no transaction was left open
        store.insert("a", "next", key_text({"k": "next"}, ["k"]), {"k": "next"})


def test_a_file_holds_what_each_request_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "sim.db")
    store = _seeded(path)
    with store.batch():
        with store.change_set():
            store.insert("a", "kept", key_text({"k": "kept"}, ["k"]), {"k": "kept"})
        with pytest.raises(Refused), store.change_set():
            store.insert("a", "undone", key_text({"k": "undone"}, ["k"]), {"k": "undone"})
            raise Refused
    again = Store(path)  # another connection sees exactly what committed
    assert {r.id for r in again.all("a")} == {"r0", "r1", "r2", "r3", "kept"}
    assert _row(again, "kept").version == _row(store, "kept").version
