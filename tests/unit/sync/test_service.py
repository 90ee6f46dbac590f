"""Apply driven through in-memory fakes of its ports: staleness, echo, optimistic writes and their 412 path, guarded
creates, healing, deletes, batching of repeated rows, one failed row in a batch, and the alert pause."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.connectors.errors import ConcurrencyConflict, Throttled, ValidationFailed
from shared.events.model import ChangeEvent, Operation, Side
from shared.maps.loader import MAPS_DIR, MapSet, load_maps
from shared.sync.service import AlertRule, ApplyService, Message, Outcome, PermanentFailure
from tests.unit.sync.fakes import COMPANY_ID, FakeLedger, FakeRows

MAPS = load_maps()
CUSTOMERS = MAPS.maps["customers"].map
GROUPS = MAPS.maps["customer_groups"].map
_ids = itertools.count(1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Bridge:
    def __init__(self, maps: MapSet = MAPS) -> None:
        self.ledger = FakeLedger()
        self.dataverse = FakeRows(Side.DATAVERSE)
        self.fno = FakeRows(Side.FNO)
        self.scheduled: list[tuple[str, float, int]] = []
        self.service = ApplyService(
            maps, self.ledger, self.dataverse, self.fno, AlertRule(errors=3), schedule=self._schedule
        )

    async def _schedule(self, event: ChangeEvent, after: float, attempt: int) -> None:
        self.scheduled.append((event.event_id, after, attempt))

    @property
    def requests(self) -> int:
        return self.dataverse.requests + self.fno.requests

    async def apply(self, *events: ChangeEvent) -> list[list[Outcome]]:
        """The changes, made in their app first (as a person would), then applied as one batch."""
        for e in events:
            if e.source is Side.FNO and e.operation is Operation.CREATE:
                self.fno.put(CUSTOMERS, dict(e.keys), dict(e.fields))
        return await self.service.apply_messages([Message(e) for e in events])


def fno_customer(number: str, version: int, operation: Operation = Operation.CREATE, **fields: Any) -> ChangeEvent:
    record = {"dataAreaId": "usmf", "CustomerAccount": number, "PartyType": "Organization", **fields}
    return ChangeEvent(
        event_id=f"fno-{next(_ids)}", source=Side.FNO, entity="CustomersV3", operation=operation,
        row_id=f"usmf|{number}", keys={"dataAreaId": "usmf", "CustomerAccount": number}, fields=record,
        source_version=str(version), occurred_at=T0 + timedelta(seconds=version),
    )  # fmt: skip


def fno_changed(b: Bridge, number: str, version: int, **fields: Any) -> ChangeEvent:
    """A person's change in F&O: the row as it is now in F&O, and its update event (which apply re-reads)."""
    b.fno.put(CUSTOMERS, {"dataAreaId": "usmf", "CustomerAccount": number}, {"PartyType": "Organization", **fields})
    return fno_customer(number, version, Operation.UPDATE)


def dataverse_account(row_id: str, number: str, version: int, **fields: Any) -> ChangeEvent:
    record = {"accountid": row_id, "accountnumber": number, "customertypecode": 3,
              "msdyn_company": {"$type": "lookup", "id": COMPANY_ID}, **fields}  # fmt: skip
    return ChangeEvent(
        event_id=f"dv-{next(_ids)}", source=Side.DATAVERSE, entity="account", operation=Operation.UPDATE,
        row_id=row_id, fields=record, source_version=str(version), occurred_at=T0 + timedelta(seconds=version),
    )  # fmt: skip


def account(b: Bridge, number: str) -> dict[str, Any] | None:
    for (table, _), row in b.dataverse.rows.items():
        if table == "accounts" and row.record.get("accountnumber") == number:
            return row.record
    return None


def outcome(result: list[list[Outcome]], i: int = 0) -> str:
    return result[i][0].outcome


async def test_a_new_row_is_one_guarded_create_and_nothing_is_read() -> None:
    b = Bridge()
    result = await b.apply(fno_customer("C1", 10, OrganizationName="Contoso"))
    assert outcome(result) == "applied" and account(b, "C1") is not None
    assert account(b, "C1")["name"] == "Contoso"  # type: ignore[index]
    assert b.requests == 1  # no read of the target: If-None-Match: * guards the create


async def test_a_change_to_a_synced_row_writes_with_the_remembered_etag_without_reading() -> None:
    b = Bridge()
    row_id = "00000000-0000-4000-8000-0000000000b2"
    await b.apply(dataverse_account(row_id, "C2", 100, name="Contoso"))  # Dataverse → F&O: one POST
    assert b.requests == 1
    result = await b.apply(dataverse_account(row_id, "C2", 101, name="Contoso Ltd"))
    assert outcome(result) == "applied"
    assert b.requests == 2  # the F&O PATCH, If-Match the ETag our create got back; no read
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c2", "dataAreaId": "usmf"}')]
    assert row.record["OrganizationName"] == "Contoso Ltd"


async def test_an_fno_update_is_reread_then_written_optimistically() -> None:
    b = Bridge()
    await b.apply(fno_customer("C2b", 10, OrganizationName="A"))
    b.fno.put(
        CUSTOMERS,
        {"dataAreaId": "usmf", "CustomerAccount": "C2b"},
        {"OrganizationName": "B", "PartyType": "Organization"},
    )
    before = b.requests
    update = fno_customer("C2b", 11, Operation.UPDATE)  # F&O sends only what changed: re-read
    assert outcome(await b.apply(update)) == "applied"
    assert b.requests - before == 2 and account(b, "C2b")["name"] == "B"  # type: ignore[index]


async def test_our_own_fno_create_seen_back_costs_no_request_and_an_fno_update_is_always_reread() -> None:
    """F&O sends no write tag: the create of a row synced already is known before the re-read. An update is re-read
    even when the values it carries are what was last synced (its event drops fields set to null)."""
    b = Bridge()
    row_id = "00000000-0000-4000-8000-0000000000d1"
    await b.apply(dataverse_account(row_id, "C12", 100, name="Contoso"))  # Dataverse → F&O: one POST
    before = b.requests
    created = fno_customer("C12", 5, OrganizationName="Contoso")  # the F&O notification of that POST
    created = created.model_copy(update={"reread_required": True})
    assert outcome(await b.apply(created)) == "skipped-stale" and b.requests == before
    await b.apply(dataverse_account(row_id, "C12", 101, name="Contoso Ltd"))  # one PATCH
    before = b.requests
    ours = fno_customer("C12", 6, Operation.UPDATE, OrganizationName="Contoso Ltd")
    ours = ours.model_copy(update={"changed_fields": ["OrganizationName"]})
    result = await b.apply(ours)  # re-read: then known as our own write (the version we wrote)
    assert outcome(result) in ("skipped-stale", "skipped-echo") and b.requests == before + 1


async def test_stale_and_echo_changes_are_skipped_without_app_requests() -> None:
    b = Bridge()
    first = fno_customer("C3", 10, OrganizationName="A")
    await b.apply(first)
    before = b.requests
    again = await b.apply(first)  # redelivered
    older = await b.apply(fno_customer("C3", 9, OrganizationName="Older"))
    row_id = account(b, "C3")["accountid"]  # type: ignore[index]
    echo = await b.apply(dataverse_account(row_id, "C3", 5000, name="A"))  # our own write, seen from Dataverse
    assert [outcome(again), outcome(older), outcome(echo)] == ["skipped-stale", "skipped-stale", "skipped-echo"]
    assert b.requests == before


async def test_a_row_changed_meanwhile_answers_412_and_the_three_way_decision_runs() -> None:
    b = Bridge()
    await b.apply(fno_customer("C4", 10, OrganizationName="A", SalesMemo="memo"))
    # A person changes the account in Dataverse (its notification not delivered yet): our ETag is now stale.
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C4", "msdyn_company": "USMF"}, {"description": "their memo"})
    requests = b.requests
    b.fno.put(
        CUSTOMERS, {"dataAreaId": "usmf", "CustomerAccount": "C4"}, {"OrganizationName": "B", "SalesMemo": "memo"}
    )
    result = await b.apply(fno_customer("C4", 11, Operation.UPDATE))
    assert outcome(result) == "applied"
    row = account(b, "C4")
    assert row is not None and row["name"] == "B" and row["description"] == "their memo"  # no lost update
    assert b.requests - requests >= 3  # the 412, the read, the write (and the write-back into F&O)


async def test_a_conflict_is_decided_by_policy_and_recorded() -> None:
    b = Bridge()
    await b.apply(fno_customer("C5", 10, OrganizationName="A"))
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C5", "msdyn_company": "USMF"}, {"name": "Dataverse's"})
    result = await b.apply(fno_changed(b, "C5", 11, OrganizationName="F&O's"))
    assert outcome(result) == "conflict"
    assert b.ledger.conflict_log and b.ledger.conflict_log[0].winner == "fno"  # merge, master fno
    assert account(b, "C5")["name"] == "F&O's"  # type: ignore[index]


async def test_a_row_created_meanwhile_on_the_target_is_not_overwritten_blindly() -> None:
    b = Bridge()
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C6", "msdyn_company": "USMF"}, {"name": "Already there"})
    result = await b.apply(fno_customer("C6", 10, OrganizationName="From F&O"))
    assert outcome(result) == "applied"  # the guarded create got 412; read, decided three-way, written
    assert account(b, "C6")["name"] == "From F&O"  # type: ignore[index]


async def test_a_row_changed_twice_in_a_batch_is_written_once_with_its_latest_state() -> None:
    b = Bridge()
    result = await b.apply(
        fno_customer("C7", 10, OrganizationName="v1"), fno_customer("C7", 11, OrganizationName="v2"),
        fno_customer("C8", 10, OrganizationName="other"),
    )  # fmt: skip
    assert [r[0].outcome for r in result] == ["skipped-stale", "applied", "applied"]  # both events recorded
    assert "superseded" in result[0][0].detail
    assert account(b, "C7")["name"] == "v2"  # type: ignore[index]
    assert b.dataverse.batches == [2] and b.requests == 1  # two rows, one $batch
    assert b.ledger.transactions == 1  # one entity-group transaction


async def test_a_row_changed_twice_in_a_batch_delivered_newest_first_keeps_its_newest_state() -> None:
    """Shuffled delivery puts the older change last in the batch: merged by row version, not by place (the crash
    test caught the older value written over the newer one, and the newer change recorded as superseded)."""
    b = Bridge()
    row_id = "00000000-0000-4000-8000-0000000000c7"
    await b.apply(dataverse_account(row_id, "C7b", 100, name="A", telephone1="+1 555 0100"))
    newer = dataverse_account(row_id, "C7b", 102, name="A", telephone1="+1 555 0222")
    older = dataverse_account(row_id, "C7b", 101, name="A", telephone1="+1 555 0212")
    result = await b.apply(newer, older)
    assert [r[0].outcome for r in result] == ["applied", "skipped-stale"]
    assert result[1][0].detail == f"superseded in its batch by {newer.event_id}"
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c7b", "dataAreaId": "usmf"}')]
    assert row.record["PrimaryContactPhone"] == "+1 555 0222"
    assert outcome(await b.apply(older)) == "skipped-stale"  # redelivered alone later: still older


async def test_the_echo_of_our_own_write_in_a_batch_does_not_swallow_a_change_merged_with_it() -> None:
    """The crash test's lost update: a person's change and the newer notification of our own write-back into the
    same row in one batch. Merged, the echo's tag made the whole unit an echo, and the person's change was lost."""
    b = Bridge()
    row_id = "00000000-0000-4000-8000-0000000000c9"
    await b.apply(dataverse_account(row_id, "C9b", 100, name="A", telephone1="+1 555 0100"))
    theirs = dataverse_account(row_id, "C9b", 101, name="A", telephone1="+1 555 0222")
    echo = dataverse_account(row_id, "C9b", 102, name="B", telephone1="+1 555 0222")
    echo = echo.model_copy(update={"write_tag": "bridge:some-earlier-change:back"})
    result = await b.apply(theirs, echo)
    assert [r[0].outcome for r in result] == ["applied", "skipped-echo"]
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c9b", "dataAreaId": "usmf"}')]
    assert row.record["PrimaryContactPhone"] == "+1 555 0222"


async def test_a_write_back_newer_than_a_notifications_image_is_never_undone_by_it() -> None:
    """The crash test's reverted name: a Dataverse change wrote F&O's name back into Dataverse, found the row holding
    a newer change of its own (so its version stays unsynced), and the follow-up that syncs the row as it now is
    failed (or the host died). The newer change's notification carries an image from before the write-back: applied
    as it is, it carried the old name into F&O. The row is re-read instead."""
    b = Bridge()
    await b.apply(fno_customer("C13", 10, OrganizationName="original"))  # F&O → Dataverse
    row_id = str(account(b, "C13")["accountid"])  # type: ignore[index]
    where = {"accountnumber": "C13", "msdyn_company": "USMF"}
    first = b.dataverse.put(CUSTOMERS, where, {"telephone1": "+1 555 0212"}).version
    second = b.dataverse.put(CUSTOMERS, where, {"telephone1": "+1 555 0222"}).version
    b.fno.put(CUSTOMERS, {"dataAreaId": "usmf", "CustomerAccount": "C13"}, {"OrganizationName": "fno 2"})
    b.fno.fail["+1 555 0222"] = Throttled("slow down", status=429, retry_after=1.0)  # the follow-up's write fails
    older = dataverse_account(row_id, "C13", first, name="original", telephone1="+1 555 0212")
    await b.service.apply_messages([Message(older)])
    # The write-back is conditional on the version the change was made from: the row moved on, so it met a 412 and
    # waits for the catch-up (whose write was throttled).
    assert account(b, "C13")["name"] == "original"  # type: ignore[index]
    b.fno.fail.clear()
    newer = dataverse_account(row_id, "C13", second, name="original", telephone1="+1 555 0222")
    assert outcome(await b.apply(newer)) == "applied"
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c13", "dataAreaId": "usmf"}')]
    assert (row.record["OrganizationName"], row.record["PrimaryContactPhone"]) == ("fno 2", "+1 555 0222")
    assert account(b, "C13")["name"] == "fno 2"  # type: ignore[index]  # written back by then


async def test_a_failed_row_fails_alone_and_the_rest_of_its_batch_completes() -> None:
    b = Bridge()
    b.dataverse.fail["BAD"] = ValidationFailed("telephone1 is too long", status=400)
    messages = [Message(fno_customer(n, 10, OrganizationName=n)) for n in ("G1", "BAD", "G2")]
    result = await b.service.apply_messages(messages)
    assert [r[0].outcome for r in result if r] == ["applied", "applied"] and result[1] == []
    assert account(b, "G1") and account(b, "G2") and account(b, "BAD") is None
    assert [e.event_id for e in b.ledger.error_log] == [messages[1].event.event_id]
    assert [s[0] for s in b.scheduled] == [messages[1].event.event_id]  # sent again alone, to dead-letter alone
    with pytest.raises(PermanentFailure):
        await b.service.apply_messages([messages[1]])


async def test_errors_past_the_alert_threshold_pause_the_map_and_its_changes_are_held() -> None:
    b = Bridge()
    b.dataverse.fail["BAD"] = ValidationFailed("refused", status=400)
    for _ in range(3):
        with pytest.raises(PermanentFailure):
            await b.apply(fno_customer("BAD", 10))
    assert b.ledger.states["customers"]["state"] == "paused"
    result = await b.apply(fno_customer("C9", 10, OrganizationName="held"))
    assert outcome(result) == "held" and b.ledger.held_events and account(b, "C9") is None


async def test_a_missing_reference_heals_first() -> None:
    b = Bridge()
    group_row = b.dataverse.put(GROUPS, {"msdyn_groupid": "90", "msdyn_company": "USMF"}, {"msdyn_description": "G"})
    group = {"$type": "lookup", "id": group_row.row_id}
    event = dataverse_account("00000000-0000-4000-8000-0000000000a1", "C10", 100, name="With group",
                              msdyn_customergroupid=group)  # fmt: skip
    result = await b.apply(event)
    assert outcome(result) == "applied"
    assert ("CustomerGroups", '{"CustomerGroupId": "90", "dataAreaId": "usmf"}') in b.fno.rows  # healed first
    customer = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c10", "dataAreaId": "usmf"}')]
    assert customer.record["CustomerGroupId"] == "90"


async def test_a_delete_deactivates_the_synced_row_once() -> None:
    b = Bridge()
    await b.apply(fno_customer("C11", 10, OrganizationName="A"))
    delete = fno_customer("C11", 11, Operation.DELETE)
    assert outcome(await b.apply(delete)) == "applied"
    assert account(b, "C11")["statecode"] == 1  # type: ignore[index]  # customers: delete → deactivate
    assert outcome(await b.apply(fno_customer("C11", 12, Operation.DELETE))) == "skipped-echo"


async def test_a_batch_of_fno_updates_is_reread_in_one_request_and_written_in_one_batch() -> None:
    b = Bridge()
    numbers = ["U1", "U2", "U3"]
    await b.apply(*(fno_customer(n, 10, OrganizationName="A") for n in numbers))
    for n in numbers:
        b.fno.put(CUSTOMERS, {"dataAreaId": "usmf", "CustomerAccount": n}, {"OrganizationName": f"new {n}"})
    before = b.requests
    result = await b.apply(*(fno_customer(n, 11, Operation.UPDATE) for n in numbers))
    assert [r[0].outcome for r in result] == ["applied"] * 3
    assert b.requests - before == 2  # one read of the three rows, one $batch of three writes
    assert all(account(b, n)["name"] == f"new {n}" for n in numbers)  # type: ignore[index]


def _moved_source_row(b: Bridge, number: str) -> tuple[str, ChangeEvent]:
    """A Dataverse change whose write-back into Dataverse finds the row moved on (a newer phone not synced yet): the
    follow-up after the batch's flush syncs the row as it now is (into F&O, with the newer phone)."""
    row_id = str(account(b, number)["accountid"])  # type: ignore[index]
    where = {"accountnumber": number, "msdyn_company": "USMF"}
    first = b.dataverse.put(CUSTOMERS, where, {"telephone1": "+1 555 0212"}).version
    b.dataverse.put(CUSTOMERS, where, {"telephone1": "+1 555 0222"})
    b.fno.put(CUSTOMERS, {"dataAreaId": "usmf", "CustomerAccount": number}, {"OrganizationName": "fno 2"})
    return row_id, dataverse_account(row_id, number, first, name="original", telephone1="+1 555 0212")


async def test_a_412_in_the_follow_up_after_a_flush_decides_again_and_is_not_error_logged() -> None:
    """The follow-up `_done` runs after a flush was outside `_apply_map`'s loop: its 412 error-logged the change
    (dead-lettered) though the row had only changed meanwhile."""
    b = Bridge()
    await b.apply(fno_customer("C14", 10, OrganizationName="original"))
    _, older = _moved_source_row(b, "C14")
    b.fno.fail_next["+1 555 0222"] = [ConcurrencyConflict("the ETag does not match", status=412)]
    result = await b.service.apply_messages([Message(older)])
    assert outcome(result) == "applied" and not b.ledger.error_log and not b.scheduled
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c14", "dataAreaId": "usmf"}')]
    assert (row.record["OrganizationName"], row.record["PrimaryContactPhone"]) == ("fno 2", "+1 555 0222")


async def test_a_ledger_conflict_in_the_follow_up_after_a_flush_decides_again_and_does_not_fail_the_batch() -> None:
    """A `LedgerConflict` there escaped `apply_batch`: the whole invocation failed and every message of the batch
    was redelivered."""
    b = Bridge()
    await b.apply(fno_customer("C15", 10, OrganizationName="original"))
    _, older = _moved_source_row(b, "C15")
    other = fno_customer("C16", 10, OrganizationName="other")
    b.fno.put(CUSTOMERS, dict(other.keys), dict(other.fields))
    b.ledger.save_conflicts = 1  # the follow-up's own ledger save (the batch's entries go by save_many)
    result = await b.service.apply_messages([Message(older), Message(other)])
    assert [outcome(result, 0), outcome(result, 1)] == ["applied", "applied"]
    assert not b.ledger.error_log and not b.scheduled
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c15", "dataAreaId": "usmf"}')]
    assert row.record["PrimaryContactPhone"] == "+1 555 0222"


async def test_a_ledger_entry_that_cannot_be_saved_retries_its_change_alone_and_the_batch_completes() -> None:
    """A non-conflict failure saving one entry of the batch (too large, a 5xx) raised out of the flush after the app
    writes went out: every invocation of the session lane failed until it dead-lettered."""
    b = Bridge()
    b.ledger.save_fail["L2"] = RuntimeError("EntityTooLarge")
    events = [fno_customer(n, 10, OrganizationName=n) for n in ("L1", "L2", "L3")]
    result = await b.apply(*events)
    assert [r[0].outcome for r in result] == ["applied", "deferred", "applied"]
    assert [s[0] for s in b.scheduled] == [events[1].event_id] and not b.ledger.error_log
    b.ledger.save_fail.clear()
    assert outcome(await b.service.apply_messages([Message(events[1])])) == "applied"  # its retry: read, decided
    assert account(b, "L2")["name"] == "L2"  # type: ignore[index]


async def test_a_conflict_whose_write_met_a_412_is_recorded_once_for_the_write_that_happened() -> None:
    """The conflict was recorded before its write: a 412 decided the change again and a second record was written,
    the first claiming a winner for a write that never happened."""
    b = Bridge()
    await b.apply(fno_customer("C17", 10, OrganizationName="A"))
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C17", "msdyn_company": "USMF"}, {"name": "Dataverse's"})
    precondition = ConcurrencyConflict("the ETag does not match", status=412)
    b.dataverse.fail_next["F&O's"] = [precondition, precondition]  # the first write, then the conflict's own
    result = await b.apply(fno_changed(b, "C17", 11, OrganizationName="F&O's"))
    assert outcome(result) == "conflict" and account(b, "C17")["name"] == "F&O's"  # type: ignore[index]
    assert [c.winner for c in b.ledger.conflict_log] == ["fno"]  # one record, of the write that went through


async def test_a_write_back_never_replaces_a_change_made_in_the_source_meanwhile() -> None:
    """The write-back into the source went with If-Match: *: a person's change to the same column, made in the
    source after the plan read it, was replaced (and no conflict recorded). It is now conditional on the source's
    ETag; on a 412 the source is read again and decided again, three-way."""
    b = Bridge()
    await b.apply(fno_customer("C18", 10, OrganizationName="A", SalesMemo="memo"))
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C18", "msdyn_company": "USMF"}, {"description": "their memo"})
    where = {"dataAreaId": "usmf", "CustomerAccount": "C18"}
    b.fno.put(CUSTOMERS, where, {"OrganizationName": "B"})
    b.fno.before_next_write = lambda: b.fno.put(CUSTOMERS, where, {"SalesMemo": "person's memo"})
    result = await b.apply(fno_customer("C18", 11, Operation.UPDATE))  # re-read: the plan knows F&O's ETag
    assert not b.ledger.error_log and not b.scheduled and outcome(result) in ("applied", "conflict")
    row = b.fno.rows[("CustomersV3", '{"CustomerAccount": "c18", "dataAreaId": "usmf"}')]
    assert row.record["SalesMemo"] == "person's memo"  # not replaced by the write-back
    assert b.ledger.conflict_log and b.ledger.conflict_log[-1].winner == "fno"  # merge, master fno: decided again
    assert account(b, "C18")["description"] == "person's memo"  # type: ignore[index]
    assert account(b, "C18")["name"] == "B"  # type: ignore[index]


async def test_a_conflict_whose_record_failed_after_its_ledger_entry_was_saved_is_recorded_on_redelivery() -> None:
    """The write and the ledger entry went through, the conflict record did not: the change, tried again, finds the
    row applied (stale) — and records the conflict its ledger entry holds, once."""
    b = Bridge()
    await b.apply(fno_customer("C19", 10, OrganizationName="A"))
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C19", "msdyn_company": "USMF"}, {"name": "Dataverse's"})
    b.ledger.conflict_fails = 1
    change = fno_changed(b, "C19", 11, OrganizationName="F&O's")
    result = await b.apply(change)
    assert outcome(result) == "deferred" and [s[0] for s in b.scheduled] == [change.event_id]  # tried again
    assert account(b, "C19")["name"] == "F&O's" and not b.ledger.conflict_log  # type: ignore[index]
    again = await b.service.apply_messages([Message(change, 1, 1)])  # the re-scheduled message
    assert outcome(again) == "skipped-stale"
    assert [(c.event_id, c.winner) for c in b.ledger.conflict_log] == [(change.event_id, "fno")]
    await b.service.apply_messages([Message(change, 2, 1)])  # delivered once more: still one record
    assert len(b.ledger.conflict_log) == 1


def manual_maps(tmp_path: Path) -> MapSet:
    """The maps, the customers map's conflicts parked for a person (policy manual)."""
    for source in MAPS_DIR.glob("*.yaml"):
        text = source.read_text()
        if source.name == "customers.yaml":
            text, count = re.subn(r"(?m)^conflict: .*$", "conflict: {policy: manual, master: fno}", text)
            assert count == 1
        (tmp_path / source.name).write_text(text)
    return load_maps(sorted(tmp_path.glob("*.yaml")))


async def test_a_parked_conflict_delivered_twice_is_recorded_once(tmp_path: Path) -> None:
    b = Bridge(manual_maps(tmp_path))
    await b.apply(fno_customer("C20", 10, OrganizationName="A"))
    b.dataverse.put(CUSTOMERS, {"accountnumber": "C20", "msdyn_company": "USMF"}, {"name": "Dataverse's"})
    change = fno_changed(b, "C20", 11, OrganizationName="F&O's")
    assert outcome(await b.apply(change)) == "conflict"
    assert outcome(await b.service.apply_messages([Message(change, 2)])) == "conflict"  # redelivered: parked again
    assert [(c.status, c.winner) for c in b.ledger.conflict_log] == [("open", "none")]  # one record waits
    assert account(b, "C20")["name"] == "Dataverse's"  # type: ignore[index]  # nothing written
