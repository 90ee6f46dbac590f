"""A map's rows are frozen out of the garbage collector's walks while it is written, and thawed when it is done —
by the last of the maps holding them frozen when runs overlap in one host (`shared/initialsync/heap.py`)."""

from __future__ import annotations

import gc

from shared.initialsync.heap import FrozenHeap


def test_the_heap_is_thawed_by_the_last_holder_only() -> None:
    assert FrozenHeap.holders == 0
    thresholds = gc.get_threshold()
    first, second = FrozenHeap(), FrozenHeap()
    try:
        first.freeze()
        rows = [{"n": n} for n in range(1000)]  # allocated after the first freeze: frozen by the second
        second.freeze()
        second.freeze()  # a hold is taken once
        assert FrozenHeap.holders == 2 and gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] >= FrozenHeap.YOUNG  # young objects collected less often meanwhile
        second.thaw()
        assert gc.get_freeze_count() > 0  # the first map still holds its rows frozen
        first.thaw()
        first.thaw()  # released once
        assert FrozenHeap.holders == 0 and gc.get_freeze_count() == 0 and gc.get_threshold() == thresholds
        assert len(rows) == 1000
    finally:
        first.thaw()
        second.thaw()
