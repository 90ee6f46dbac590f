"""A conflict whose record failed after its ledger entry was saved is owed by the entry; the change is re-scheduled
(≥ 5 s) to record it, and the row's next change, usually applied first, must not make the entry forget it. From the
review."""

from __future__ import annotations

from shared.sync.service import Message
from tests.unit.sync.test_service import Bridge, account, fno_changed, fno_customer, outcome


async def test_an_owed_conflict_survives_the_rows_next_change() -> None:
    b = Bridge()
    await b.apply(fno_customer("C91", 10, OrganizationName="A"))
    b.dataverse.put(
        b.service.maps.maps["customers"].map, {"accountnumber": "C91", "msdyn_company": "USMF"}, {"name": "Dataverse's"}
    )
    b.ledger.conflict_fails = 1
    change = fno_changed(b, "C91", 11, OrganizationName="F&O's")
    assert outcome(await b.apply(change)) == "deferred"  # written, entry saved, conflict record failed
    assert account(b, "C91")["name"] == "F&O's"  # type: ignore[index]
    later = fno_changed(b, "C91", 12, OrganizationName="F&O's again")  # the session's next change
    await b.apply(later)
    again = await b.service.apply_messages([Message(change, 1, 1)])  # the re-scheduled message, seconds later
    assert outcome(again) == "skipped-stale"
    assert [c.event_id for c in b.ledger.conflict_log] == [change.event_id]
