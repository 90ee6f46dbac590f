"""F&O creates whose values came whole (their enums decoded at ingest, so not re-read): a late one must not carry its
older values over a newer change already applied (re-scheduled after a 429, redelivered after a lock loss), and the
event's own number — a data event's RowVersion, absent or not of the ETag's sequence — must never become the row's
version in the ledger, or later (re-read) updates would be judged stale against it. From the review."""

from __future__ import annotations

from shared.events.model import Operation
from shared.sync.service import Message
from tests.unit.sync.test_service import CUSTOMERS, Bridge, account, fno_customer, outcome


async def test_a_late_decoded_create_does_not_undo_a_newer_update() -> None:
    b = Bridge()
    keys = {"dataAreaId": "usmf", "CustomerAccount": "C90"}
    create = fno_customer("C90", 10, OrganizationName="Old").model_copy(
        update={"source_version": None, "reread_required": False}
    )
    # The person created the row, then changed it; the create's message was re-scheduled (429), the update went first.
    b.fno.put(CUSTOMERS, keys, {"OrganizationName": "New", "PartyType": "Organization"})
    update = fno_customer("C90", 11, Operation.UPDATE)
    assert outcome(await b.service.apply_messages([Message(update)])) == "applied"
    assert account(b, "C90")["name"] == "New"  # type: ignore[index]
    result = await b.service.apply_messages([Message(create)])  # decoded: no re-read
    assert account(b, "C90")["name"] == "New", f"{outcome(result)}: the late create wrote its older values back"


async def test_a_decoded_creates_event_number_does_not_make_later_updates_stale() -> None:
    """The ledger's F&O version now comes from the data event (Target.RowVersion) for a decoded create, and from the
    ETag for every later (re-read) update. If the two numbers are not of one sequence (F&O's ETag carries RecVersion,
    which changes to "a different number" on each update, not a larger one), later updates are skipped as stale."""
    b = Bridge()
    keys = {"dataAreaId": "usmf", "CustomerAccount": "C91"}
    create = fno_customer("C91", 10, OrganizationName="Old").model_copy(
        update={"source_version": "5637144576", "reread_required": False}
    )
    b.fno.put(CUSTOMERS, keys, {"OrganizationName": "Old", "PartyType": "Organization"})
    assert outcome(await b.service.apply_messages([Message(create)])) == "applied"
    b.fno.put(CUSTOMERS, keys, {"OrganizationName": "New", "PartyType": "Organization"})
    result = await b.service.apply_messages([Message(fno_customer("C91", 11, Operation.UPDATE))])
    assert account(b, "C91")["name"] == "New", f"{outcome(result)}: the update was judged stale"
