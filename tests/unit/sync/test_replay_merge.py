"""An operator replays an error while the failed change is still being redelivered: both meet in one batch and are
merged. The merged change carries the replay's id, so its outcome reaches the error entry — under the original's id
the entry stayed `replaying` for ever (a fresh-clone CI run of the console test)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events.model import ChangeEvent, Operation, Side
from shared.ops.ids import replay_event_id
from shared.sync.batching import coalesce
from shared.sync.service import Message


def change(event_id: str) -> ChangeEvent:
    return ChangeEvent(event_id=event_id, source=Side.FNO, entity="CustomersV3", operation=Operation.CREATE,
                       row_id="84ff46c4-810c-45af-baba-ec06a1fc4dba", keys={"dataAreaId": "usmf",
                       "CustomerAccount": "RA-1"}, fields={"OrganizationName": "Console"}, source_version="1026",
                       occurred_at=datetime.now(UTC))  # fmt: skip


def test_a_change_and_its_replay_in_one_batch_are_applied_under_the_replays_id() -> None:
    replay = replay_event_id("e1", 1)
    for order in (["e1", replay], [replay, "e1"]):
        [(merged, _, members)] = coalesce([Message(change(i)) for i in order])
        assert merged.event_id == replay and sorted(members) == [0, 1], order


def test_two_changes_of_a_row_merge_as_before() -> None:
    [(merged, _, _)] = coalesce([Message(change("e1")), Message(change("e2"))])
    assert merged.event_id == "e2"
