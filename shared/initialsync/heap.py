"""Keeping a sync run's bulk data out of the cyclic garbage collector's way.

A run holds every row it read (100,000 rows: millions of dicts and strings) while it decides, saves and writes
chunk after chunk; each full collection the collector starts meanwhile walks all of them, for nothing — they live
until the map is done, and are freed by reference counting then. Measured on a 100,000-row map: deciding a created
row cost ≈0.085 ms with them walked, ≈0.070 ms frozen (`gc.freeze`: moved to a generation the collector skips).
Freezing is process-wide, so concurrent runs in one host count their holds and the last one out unfreezes; what a
frozen object drops by reference counting is freed as always, only cycles among them wait for the thaw.

While frozen, the youngest generation is also collected only every 250,000 allocations (net of frees) rather than
700: more than the chunks in flight hold (3 chunks of 2,000 decisions, with their ledger entries, operations and
answers: ~30 containers a row, ~180,000), which are freed by reference counting before a collection would walk them.
A collection walks each young object's references into the frozen rows (cache misses: ~6 ms for 14,000 decisions),
and a chunk's work makes no cyclic garbage for it to find. Measured over 100,000 rows decided, saved and written
in-process: 700 → 20,000 cut the collector's share from ≈0.014 to ≈0.008 ms a row; 250,000: no collection at all.
"""

from __future__ import annotations

import gc


class FrozenHeap:
    """One map's hold on the frozen heap: `freeze` once its bulk data is read, `thaw` when the map is done."""

    holders = 0  # maps holding the heap frozen in this process
    YOUNG = 250_000  # allocations between collections of the youngest generation while frozen (Python's default: 700)
    _thresholds: tuple[int, int, int] | None = None  # as they were before the first hold

    def __init__(self) -> None:
        self.frozen = False

    def freeze(self) -> None:
        if not self.frozen:
            self.frozen = True
            FrozenHeap.holders += 1
            if FrozenHeap.holders == 1:
                FrozenHeap._thresholds = gc.get_threshold()
                young, middle, old = FrozenHeap._thresholds
                gc.set_threshold(max(young, FrozenHeap.YOUNG), middle, old)
            gc.freeze()  # what is alive now (the rows read, the ledger, the matched pairs) is skipped from here on

    def thaw(self) -> None:
        if self.frozen:
            self.frozen = False
            FrozenHeap.holders -= 1
            if FrozenHeap.holders == 0:
                gc.unfreeze()
                if FrozenHeap._thresholds is not None:
                    gc.set_threshold(*FrozenHeap._thresholds)
                    FrozenHeap._thresholds = None
