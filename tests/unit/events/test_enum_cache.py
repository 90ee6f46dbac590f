"""Ingest decodes F&O data events' enums with the virtual tables' options, read once per table per process: the
reads are amortised (one for many changes, however many arrive together), read again after the TTL or for a value
not known yet (at most once a minute), and never in the way — a failed, refused or slow read leaves the change to
be re-read by apply, and the notification is still accepted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shared.connectors.errors import NotFound, Transient
from shared.events.model import ChangeEvent, Side
from shared.ingest.enums import VirtualTableEnums
from shared.ingest.service import IngestService
from shared.maps.loader import load_maps
from tests.unit.events.builders import body, context, entity, option
from tests.unit.events.test_fno_enums import METADATA, TABLE, opt, picklists

MAPS = load_maps()


class Queue:
    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    async def publish(self, events: Sequence[ChangeEvent]) -> None:
        self.events.extend(events)


class Dataverse:
    """Answers the picklist definitions query, counting the requests; `answer` may be an exception to raise."""

    def __init__(self, answer: Any = METADATA, delay: float = 0.0) -> None:
        self.answer, self.delay, self.requests = answer, delay, 0

    async def read(self, table: str) -> Any:
        self.requests += 1
        await asyncio.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def notification(account: str, party: int = 200000011) -> bytes:
    fields = {
        "mserp_dataareaid": "usmf", "mserp_customeraccount": account, "mserp_organizationname": "Enum Traders",
        "mserp_partytype": option(party), "mserp_creditlimitismandatory": option(200000003),
    }  # fmt: skip
    target = entity(TABLE, f"00000000-0000-4000-8000-{abs(hash(account)) % 10**12:012d}", fields)
    return body(context("OnExternalCreated", TABLE, "00000000-0000-0000-0000-000000000000", target))


def service(dataverse: Dataverse, clock: Clock | None = None, timeout: float = 5.0) -> tuple[IngestService, Queue]:
    queue = Queue()
    enums = VirtualTableEnums(dataverse.read, clock=clock or Clock(), timeout=timeout)
    return IngestService(queue, {}, catalog=MAPS, enums=enums), queue


async def test_many_changes_arriving_together_cost_one_metadata_read_and_none_is_reread() -> None:
    dataverse = Dataverse(delay=0.05)
    ingest, queue = service(dataverse)
    await asyncio.gather(*(ingest.receive(Side.FNO, notification(f"E-{i}"), {}) for i in range(20)))
    await ingest.receive(Side.FNO, notification("E-late"), {})
    assert dataverse.requests == 1 and len(queue.events) == 21
    assert all(not e.reread_required for e in queue.events)
    assert {e.fields["PartyType"] for e in queue.events} == {"LegalEntity"}
    assert {e.fields["CreditLimitIsMandatory"] for e in queue.events} == {"Yes"}


async def test_a_failed_refused_or_slow_read_still_accepts_the_change_for_a_reread() -> None:
    for dataverse, timeout in (
        (Dataverse(Transient("down", status=503)), 5.0),
        (Dataverse(NotFound("no such table", status=404)), 5.0),
        (Dataverse(RuntimeError("DATAVERSE_URL is not set")), 5.0),
        (Dataverse(delay=1.0), 0.05),
        (Dataverse({"unexpected": "shape"}), 5.0),
    ):
        ingest, queue = service(dataverse, timeout=timeout)
        for i in range(3):
            result = await ingest.receive(Side.FNO, notification(f"F-{i}"), {})
            assert len(result.accepted) == 1
        assert dataverse.requests == 1  # not asked again at once: the next minute's changes will
        assert all(e.reread_required and e.fields["PartyType"] == {"$type": "choice", "value": 200000011}
                   for e in queue.events)  # fmt: skip


async def test_a_new_value_reads_the_options_again_once_a_minute_at_most() -> None:
    clock = Clock()
    dataverse = Dataverse()
    ingest, queue = service(dataverse, clock)
    await ingest.receive(Side.FNO, notification("N-1"), {})
    extended = picklists(
        ("mserp_creditlimitismandatory", [opt(200000003, "Yes", "Yes")], True),
        ("mserp_partytype", [opt(200000011, "LegalEntity", "Legal entity"), opt(200000020, "Team", "Team")], True),
    )
    dataverse.answer = extended  # an extensible enum got a value: the cached options do not know it
    clock.now += 5
    await ingest.receive(Side.FNO, notification("N-2", 200000020), {})
    assert dataverse.requests == 1 and queue.events[-1].reread_required  # asked a moment ago: re-read by apply
    clock.now += 60
    await ingest.receive(Side.FNO, notification("N-3", 200000020), {})
    assert dataverse.requests == 2 and queue.events[-1].fields["PartyType"] == "Team"
    assert not queue.events[-1].reread_required


async def test_the_options_are_read_again_after_their_ttl() -> None:
    clock = Clock()
    dataverse = Dataverse()
    ingest, queue = service(dataverse, clock)
    await ingest.receive(Side.FNO, notification("T-1"), {})
    clock.now += 600
    await ingest.receive(Side.FNO, notification("T-2"), {})
    assert dataverse.requests == 1
    clock.now += 301  # past 15 minutes
    await ingest.receive(Side.FNO, notification("T-3"), {})
    assert dataverse.requests == 2 and not any(e.reread_required for e in queue.events)


async def test_dataverse_notifications_and_enumless_f_and_o_events_never_read_metadata() -> None:
    dataverse = Dataverse()
    ingest, _ = service(dataverse)
    fields = {"mserp_dataareaid": "usmf", "mserp_customeraccount": "P-1", "mserp_organizationname": "Plain"}
    target = entity(TABLE, "00000000-0000-4000-8000-000000000001", fields)
    await ingest.receive(Side.FNO, body(context("OnExternalCreated", TABLE, "0" * 8 + "-0000-0000-0000-" + "0" * 12,
                                                target)), {})  # fmt: skip
    account = entity("account", "00000000-0000-4000-8000-0000000000e1", {"name": "Contoso", "accountnumber": "E1"})
    await ingest.receive(Side.DATAVERSE, body(context("Create", "account", account["Id"], account)), {})
    assert dataverse.requests == 0
