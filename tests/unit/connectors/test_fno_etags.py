"""F&O's ETag is `W/"<base64 of '<RecVersion>,<RecId>'>"`, one pair per table of the entity: the RecId never changes
and RecVersion is a random number after each update ("Optimistic Concurrency Control", Dynamics AX docs: "The
default value of recVersion is 1. This is changed to a random value when a record is updated."). Read as a number,
the version would be the RecId — the same for every update — and every F&O change after a row's first sync would be
judged stale. It is an opaque token: equal means the same state, different means changed, never older."""

from __future__ import annotations

import base64

from shared.connectors.wire import etag_version
from shared.sync.batching import _older
from shared.sync.decide import is_newer


def fno_etag(text: str) -> str:
    return 'W/"' + base64.b64encode(f"'{text}'".encode()).decode() + '"'


def test_captured_f_and_o_etags_are_read_as_opaque_tokens() -> None:
    # ../shared/reference/fno.md; an OperationalSites row of a real environment (four tables).
    assert etag_version('W/"JzEsNjg3MTk0ODI4MzMn"') == "1,68719482833"
    four = 'W/"JzAsMjI1NjU0MjE2NzY7MCwyMjU2NTQyMTQyNjswLDA7MCwyMjU2NTQyNjk4OSc="'
    assert etag_version(four) == "0,22565421676;0,22565421426;0,0;0,22565426989"
    assert etag_version('W/"468026"') == "468026"  # Dataverse: the versionnumber


def test_an_update_is_newer_whatever_its_random_recversion() -> None:
    inserted = etag_version(fno_etag("1,5637144578"))
    updated = etag_version(fno_etag("1954221457,5637144578"))
    again = etag_version(fno_etag("31337,5637144578"))  # a smaller RecVersion: still a later state
    assert is_newer(updated, inserted) and is_newer(again, updated)
    assert not is_newer(again, again)  # the same token: the state already recorded (stale, or our own write)
    assert not is_newer("468025", "468026") and is_newer("468027", "468026")  # Dataverse's numbers do order
    assert is_newer(again, "5637144578")  # a ledger entry of the old reading (the RecId) is no reason to skip


def test_f_and_o_changes_are_never_merged_as_older() -> None:
    from datetime import UTC, datetime

    from shared.events.model import ChangeEvent, Operation, Side

    def change(event_id: str, version: str | None) -> ChangeEvent:
        return ChangeEvent(event_id=event_id, source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                           row_id="{1}", occurred_at=datetime.now(UTC), source_version=version)  # fmt: skip

    a, b = change("a", "31337,5637144578"), change("b", "1954221457,5637144578")
    assert not _older(a, b) and not _older(b, a)


def test_a_dataverse_modifiedon_version_of_a_change_queued_before_the_upgrade_is_never_stale() -> None:
    """Changes queued or held before versions came from the images carry `modifiedon` (to the second): two of one
    row within one second must not be judged the same state (final review). Only F&O tokens compare by identity."""
    assert is_newer("2026-11-30T08:00:00Z", "2026-11-30T08:00:00Z")
    assert not is_newer("1,5637144578", "1,5637144578")
