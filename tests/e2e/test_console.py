"""The operator's API on the whole local stack: no key, no data; errors and conflicts paged and filtered; replay
(still broken: the error stays with the new message; fixed: resolved, by whom); conflict resolution written to both
apps and the ledger; dead-letter resubmit; alert notifications posted (and retried) to a receiver."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from azure.data.tables.aio import TableServiceClient
from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from shared.ledger.model import ErrorRecord, LedgerEntry, key_text
from tests import stack
from tests.e2e.console_stack import Receiver, api, console_stack, set_column_length
from tests.e2e.sync_stack import KEYS, SyncStack, dataverse_account, eventually, fno_customer, synced_customer, unique

ADA = {"X-MS-CLIENT-PRINCIPAL-NAME": "ada@contoso.example"}
PHONE = "+1 555 " + "0" * 60  # 67 characters: over Dataverse's telephone1 (50) until a customizer widens it


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncStack, Receiver, str]]:
    # Its own Azurite: the ledger, errors and conflicts these tests leave must not reach the session's other stacks
    # (whose simulators give the same rows other ids), nor theirs reach these.
    with stack.azurite() as own, console_stack(own, tmp_path_factory.mktemp("console-maps")) as (bridge, hook):
        yield bridge, hook, own.connection_string()


@pytest.fixture(scope="module")
def bridge(console: tuple[SyncStack, Receiver, str]) -> SyncStack:
    return console[0]


@pytest.fixture(scope="module")
def storage(console: tuple[SyncStack, Receiver, str]) -> str:
    return console[2]


async def _errors_of(bridge: SyncStack, number: str, status: str = "") -> list[dict[str, Any]]:
    query = "errors?map=customers&per_page=500" + (f"&status={status}" if status else "")
    found = (await api(bridge, "GET", query)).json()["errors"]
    return [e for e in found if e["event"]["keys"].get("CustomerAccount") == number]


async def _letters_of(bridge: SyncStack, number: str) -> list[dict[str, Any]]:
    found = (await api(bridge, "GET", "deadletters?limit=100")).json()["deadletters"]
    return [d for d in found if d["event"] and d["event"]["keys"].get("CustomerAccount") == number]


async def _dead_lettered(bridge: SyncStack, number: str) -> int:
    """The dead letters of the customer's changes, peeked on the broker itself (the API's list settles some)."""
    async with (
        ServiceBusClient.from_connection_string(bridge.servicebus) as client,
        client.get_queue_receiver("changes", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as rx,
    ):
        peeked = await rx.peek_messages(max_message_count=250)
    return sum(1 for m in peeked if number in b"".join(bytes(b) for b in m.body).decode())


async def _create_customer(bridge: SyncStack, number: str, phone: str) -> None:
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Console", "PartyType": "Organization", "PrimaryContactPhone": phone},
        )


async def test_without_the_key_every_page_and_call_is_401_with_no_data(bridge: SyncStack) -> None:
    calls = [("GET", "console"), ("GET", "status"), ("GET", "errors"), ("GET", "conflicts"), ("GET", "deadletters"),
             ("GET", "maps"), ("POST", "errors/eA/replay"), ("POST", "errors/eA/dismiss"),
             ("POST", "maps/customers/errors/replay"), ("POST", "conflicts/eA/resolve"),
             ("POST", "deadletters/1/resubmit"), ("POST", "maps/customers/pause")]  # fmt: skip
    for method, path in calls:
        for key in (None, KEYS["default"], "wrong"):  # a host key opens the webhooks, never the console
            answer = await api(bridge, method, path, key=key)
            assert answer.status_code == 401, (method, path, key)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "customers" not in answer.text and "<script" not in answer.text
    assert (await api(bridge, "GET", "maps")).json()["maps"][0]["state"] == "running"  # nothing was paused
    page = await api(bridge, "GET", "console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" in page.text and page.headers["cache-control"] == "no-store"


async def test_errors_page_through_thousands_filtered_by_map_status_and_time(bridge: SyncStack, storage: str) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    async with TableServiceClient.from_connection_string(storage) as service:
        table = service.get_table_client("errors")
        for i in range(1200):
            record = ErrorRecord(map="paging", event_id=f"p-{i:04d}", event={"keys": {}}, request="", message=f"m{i}",
                                 at=base + timedelta(minutes=i))  # fmt: skip
            await table.upsert_entity({"PartitionKey": "paging", "RowKey": record.event_id, "At": record.at,
                                       "Record": record.model_dump_json()})  # fmt: skip
    first = (await api(bridge, "GET", "errors?map=paging&per_page=500")).json()
    assert (first["total"], first["pages"], len(first["errors"])) == (1200, 3, 500)
    assert first["errors"][0]["event_id"] == "p-1199"  # newest first
    last = (await api(bridge, "GET", "errors?map=paging&per_page=500&page=3")).json()
    assert len(last["errors"]) == 200 and last["errors"][-1]["event_id"] == "p-0000"
    seen = {e["id"] for p in (1, 2, 3) for e in
            (await api(bridge, "GET", f"errors?map=paging&per_page=500&page={p}")).json()["errors"]}  # fmt: skip
    assert len(seen) == 1200
    since = (base + timedelta(minutes=1190)).isoformat()
    until = (base + timedelta(minutes=1194)).isoformat()
    window = (await api(bridge, "GET", f"errors?map=paging&since={since}&until={until}")).json()
    assert [e["event_id"] for e in window["errors"]] == [f"p-{i:04d}" for i in range(1194, 1189, -1)]
    assert (await api(bridge, "GET", "errors?map=other")).json()["total"] == 0

    # Dismissing needs a reason and records who; a dismissed error leaves the open list.
    target = window["errors"][0]
    refused = await api(bridge, "POST", f"errors/{target['id']}/dismiss", {"reason": " "})
    assert refused.status_code == 400 and refused.headers["content-type"].startswith("application/problem+json")
    done = (await api(bridge, "POST", f"errors/{target['id']}/dismiss", {"reason": "test data"}, headers=ADA)).json()
    assert (done["status"], done["note"], done["resolved_by"]) == ("dismissed", "test data", "ada@contoso.example")
    assert (await api(bridge, "GET", "errors?map=paging&status=open")).json()["total"] == 1199
    assert (await api(bridge, "GET", "errors?map=paging&status=dismissed")).json()["total"] == 1
    for bad in ("errors?status=gone", "errors?page=0", "errors?since=yesterday", "conflicts?per_page=x"):
        answer = await api(bridge, "GET", bad)
        assert answer.status_code == 400 and answer.json()["detail"], bad
    assert (await api(bridge, "POST", "errors/not-an-id/replay")).status_code == 404


async def test_replay_keeps_a_still_broken_change_with_the_new_message_and_brings_a_fixed_one_over(
    bridge: SyncStack,
) -> None:
    await set_column_length(bridge, "telephone1", 60)
    number = unique("RP")
    await _create_customer(bridge, number, PHONE)
    (error,) = await eventually(lambda: _errors_of(bridge, number), bool, seconds=30)
    assert error["status"] == "open" and "'60'" in error["message"]

    await set_column_length(bridge, "telephone1", 55)  # still too short: the replay fails again
    replaying = await api(bridge, "POST", f"errors/{error['id']}/replay", headers=ADA)
    assert replaying.status_code == 202 and replaying.json()["status"] == "replaying"
    (again,) = await eventually(
        lambda: _errors_of(bridge, number), lambda es: len(es) == 1 and es[0]["status"] == "open", seconds=30
    )
    assert "'55'" in again["message"] and again["replays"] == 1 and again["id"] == error["id"]

    # The original message, failed on every delivery, sits in the dead letters.
    assert await eventually(lambda: _letters_of(bridge, number), bool, seconds=30)
    await set_column_length(bridge, "telephone1", 100)  # fixed
    assert (await api(bridge, "POST", f"errors/{error['id']}/replay", headers=ADA)).status_code == 202
    (fixed,) = await eventually(
        lambda: _errors_of(bridge, number), lambda es: es[0]["status"] == "resolved", seconds=30
    )
    assert fixed["resolved_by"] == "ada@contoso.example" and fixed["resolved_at"] and fixed["replays"] == 2
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
    assert account is not None and account["telephone1"] == PHONE
    # Brought over: its dead letters are settled (completed, not only hidden from the list), so the dead-letter
    # list no longer shows a resolved change.
    assert await eventually(lambda: _dead_lettered(bridge, number), lambda found: found == 0, seconds=30) == 0
    assert await _letters_of(bridge, number) == []
    conflict = await api(bridge, "POST", f"errors/{error['id']}/replay")
    assert conflict.status_code == 409  # a resolved error is not replayed again


async def test_replay_all_of_a_map(bridge: SyncStack) -> None:
    await set_column_length(bridge, "telephone1", 50)
    numbers = [unique("RA") for _ in range(2)]
    for number in numbers:
        await _create_customer(bridge, number, PHONE)
    for number in numbers:
        await eventually(lambda n=number: _errors_of(bridge, n, "open"), bool, seconds=30)
    await set_column_length(bridge, "telephone1", 100)
    replayed = (await api(bridge, "POST", "maps/customers/errors/replay", headers=ADA)).json()
    assert replayed["replayed"] >= 2
    for number in numbers:
        await eventually(lambda n=number: _errors_of(bridge, n), lambda es: es[0]["status"] == "resolved", seconds=30)
        assert await dataverse_account(bridge, "USMF", number) is not None


async def test_resolving_a_parked_conflict_applies_the_whole_change_to_both_apps_and_the_ledger(
    bridge: SyncStack, storage: str
) -> None:
    number, account = await synced_customer(bridge, "RC")
    assert (await api(bridge, "POST", "maps/customers/pause")).status_code == 200
    async with bridge.fno() as fno:  # one change: a conflicting column (the name) and one that is not (the phone)
        await fno.update(
            "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "F&O name", "PrimaryContactPhone": "+1 555 0101"},
        )  # fmt: skip
    await bridge.settle(1.0)
    async with bridge.dataverse() as dataverse:
        await dataverse.write("accounts", str(account["accountid"]), {"name": "DV name"})
    await bridge.settle(1.0)
    assert (await api(bridge, "POST", "maps/customers/resume")).json()["released"] >= 2

    async def open_conflicts() -> list[dict[str, Any]]:
        found = (await api(bridge, "GET", "conflicts?map=customers&status=open")).json()["conflicts"]
        return [c for c in found if c["key"].get("CustomerAccount") == number]

    parked = await eventually(open_conflicts, lambda cs: len(cs) == 2, seconds=30)
    first = parked[0]
    missing = await api(bridge, "POST", f"conflicts/{first['id']}/resolve", {"fields": {}})
    assert missing.status_code == 400 and "choose a value" in missing.json()["detail"]
    # F&O's change first: the name as chosen, and its phone — not in conflict — comes over with it.
    from_fno = next(c for c in parked if c["source"] == "fno")
    (column,) = from_fno["fields"]
    answer = await api(bridge, "POST", f"conflicts/{from_fno['id']}/resolve", {"fields": {column: {"take": "fno"}}},
                       headers=ADA)  # fmt: skip
    assert answer.status_code == 200, answer.text
    resolved = answer.json()
    assert (resolved["status"], resolved["resolved_by"]) == ("resolved", "ada@contoso.example")
    assert resolved["resolution"]["fields"] == {"name": {"take": "fno", "value": "F&O name"}}
    assert resolved["resolution"]["written"]["dataverse"] == {"name": "F&O name", "telephone1": "+1 555 0101"}
    mirrored = await dataverse_account(bridge, "USMF", number)
    assert mirrored is not None and (mirrored["name"], mirrored["telephone1"]) == ("F&O name", "+1 555 0101")
    # Dataverse's change: the operator types the value — first one F&O refuses (its name holds 100 characters):
    # nothing is written, and the ledger must not keep the refused value as synced on either side.
    from_dataverse = next(c for c in parked if c["source"] == "dataverse")
    (column,) = from_dataverse["fields"]
    refused = await api(bridge, "POST", f"conflicts/{from_dataverse['id']}/resolve",
                        {"fields": {column: {"take": "value", "value": "N" * 150}}}, headers=ADA)  # fmt: skip
    assert refused.status_code == 502 and "refused" in refused.json()["detail"], refused.text
    async with TableServiceClient.from_connection_string(storage) as service:
        key = {"CustomerAccount": number, "dataAreaId": "usmf"}
        entity = await service.get_table_client("ledger").get_entity("customers", key_text(key))
        kept = LedgerEntry.model_validate_json(entity["Entry"])
    assert kept.fno.values.get("OrganizationName") != "N" * 150 and kept.dataverse.values.get("name") != "N" * 150
    answer = await api(bridge, "POST", f"conflicts/{from_dataverse['id']}/resolve",
                       {"fields": {column: {"take": "value", "value": "F&O name"}}}, headers=ADA)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["resolution"]["fields"][column] == {"take": "value", "value": "F&O name"}
    customer = await fno_customer(bridge, "usmf", number)
    mirrored = await dataverse_account(bridge, "USMF", number)
    assert customer is not None and mirrored is not None
    assert (customer["OrganizationName"], customer["PrimaryContactPhone"]) == ("F&O name", "+1 555 0101")
    assert (mirrored["name"], mirrored["telephone1"]) == ("F&O name", "+1 555 0101")
    async with TableServiceClient.from_connection_string(storage) as service:
        key = {"CustomerAccount": number, "dataAreaId": "usmf"}
        entity = await service.get_table_client("ledger").get_entity("customers", key_text(key))
        entry = LedgerEntry.model_validate_json(entity["Entry"])
    assert entry.fno.values["OrganizationName"] == "F&O name" and entry.dataverse.values["name"] == "F&O name"
    assert entry.fno.values["PrimaryContactPhone"] == entry.dataverse.values["telephone1"] == "+1 555 0101"
    await bridge.settle(2.0)  # the writes' own notifications are echoes: nothing new is parked
    assert await open_conflicts() == []
    again = await api(bridge, "POST", f"conflicts/{first['id']}/resolve", {"fields": {"name": {"take": "fno"}}})
    assert again.status_code == 409


async def test_a_dead_lettered_change_is_browsed_and_resubmitted(bridge: SyncStack) -> None:
    await set_column_length(bridge, "telephone1", 50)
    number = unique("DL")
    await _create_customer(bridge, number, PHONE)

    def letters() -> Awaitable[list[dict[str, Any]]]:
        return _letters_of(bridge, number)

    (letter,) = await eventually(letters, bool, seconds=90)
    assert letter["event"]["entity"] == "CustomersV3" and letter["delivery_count"] >= 1
    await set_column_length(bridge, "telephone1", 100)
    answer = await api(bridge, "POST", f"deadletters/{letter['id']}/resubmit", headers=ADA)
    assert answer.status_code == 202 and answer.json()["resubmitted_by"] == "ada@contoso.example"
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
    assert account is not None and account["telephone1"] == PHONE
    assert await letters() == []
    await eventually(lambda: _errors_of(bridge, number), lambda es: es[0]["status"] == "resolved", seconds=30)
    assert (await api(bridge, "POST", f"deadletters/{letter['id']}/resubmit")).status_code == 404


async def test_one_trace_runs_from_the_webhook_through_the_bus_to_the_target_write(bridge: SyncStack) -> None:
    """The trace id a notification arrives with is the one the apply's write into the other app carries."""
    trace_id = uuid.uuid4().hex
    endpoint = f"{bridge.host}/api/webhooks/fno?code={KEYS['fno_webhook']}"

    async def data_events(headers: dict[str, str]) -> None:
        async with httpx.AsyncClient() as http:
            body = {"url": endpoint, "headers": headers}
            (await http.post(f"{bridge.fno_url}/_admin/data-events", json=body)).raise_for_status()

    await data_events({"traceparent": f"00-{trace_id}-{'5' * 16}-01"})
    try:
        number = unique("TR")
        await _create_customer(bridge, number, "+1 555 0199")
        await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
    finally:
        await data_events({})
    traced = [t.split("-") for t in (await bridge.stats("dataverse"))["traceparents"]]
    assert any(parts[1] == trace_id for parts in traced), traced[-5:]


async def test_alert_rules_post_their_notifications_to_the_receiver_retrying_a_failure(
    console: tuple[SyncStack, Receiver, str],
) -> None:
    bridge, hook, _ = console

    async def received() -> list[dict[str, Any]]:
        return list(hook.received)

    rules = {"1 errors in 5 minutes", "a conflict parked"}
    found = await eventually(received, lambda r: rules <= {n["rule"] for n in r}, seconds=30)
    assert hook.refused == 1  # the first POST failed and was delivered again
    note = next(n for n in found if n["rule"] == "a conflict parked")
    assert note["map"] == "customers" and "parked" in note["what"] and note["actions"] == ["notify"]
    assert note["console"] == "http://console.example/api/console#map=customers" and note["text"]
    status = (await api(bridge, "GET", "status")).json()
    customers = next(m for m in status["maps"] if m["map"] == "customers")
    assert customers["last_alert"] and customers["applied_last_hour"] >= 1 and len(customers["chart"]) == 60
    assert sum(p["applied"] for p in customers["chart"]) == customers["applied_last_hour"]
    assert json.dumps(customers)  # plain JSON


async def test_an_initial_sync_conflict_is_resolved_from_the_console(bridge: SyncStack) -> None:
    """The map's policy is `manual` here, so a first sync leaves a pair that differs as an open conflict (source
    "sync", each app's value under its name) — resolving it was a 500 (`'sync' is not a valid Side`). Last in the
    module: the run goes over every customer the other tests left."""
    from tests.e2e.sync_stack import company_id

    number = unique("IC")
    await bridge.delivery("fno", drop_share=1.0)  # rows both apps held before the bridge was connected
    await bridge.delivery("dataverse", drop_share=1.0)
    try:
        async with bridge.fno() as fno:
            await fno.create("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number},
                             {"OrganizationName": "F&O's name", "PartyType": "Organization", "CustomerGroupId": "10",
                              "LanguageId": "en-us"})  # fmt: skip
        group_key = {"_msdyn_company_value": await company_id(bridge, "USMF"), "msdyn_groupid": "10"}
        lookups = {"msdyn_company": ("cdm_companies", {"cdm_companycode": "USMF"}),
                   "msdyn_customergroupid": ("msdyn_customergroups", group_key)}  # fmt: skip
        async with bridge.dataverse() as dv:
            await dv.create("accounts", {"accountnumber": number, "name": "Dataverse's name", "customertypecode": 3,
                                         "address1_addresstypecode": 2}, lookups=lookups)  # fmt: skip
    finally:
        await bridge.delivery("fno")
        await bridge.delivery("dataverse")
    started = await api(bridge, "POST", "maps/customers/sync", {"mode": "sync"})
    assert started.status_code == 202, started.text

    async def report() -> dict[str, Any]:
        found: dict[str, Any] = (await api(bridge, "GET", f"sync/{started.json()['run_id']}")).json()
        return found

    assert (await eventually(report, lambda r: r["state"] in ("done", "failed"), seconds=90))["state"] == "done"
    found = (await api(bridge, "GET", "conflicts?map=customers&status=open&per_page=500")).json()["conflicts"]
    (parked,) = [c for c in found if c["key"].get("CustomerAccount") == number]
    assert parked["source"] == "sync" and set(parked["fields"]) == {"name"}
    answer = await api(bridge, "POST", f"conflicts/{parked['id']}/resolve", {"fields": {"name": {"take": "fno"}}},
                       headers=ADA)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["resolution"]["fields"] == {"name": {"take": "fno", "value": "F&O's name"}}
    account = await dataverse_account(bridge, "USMF", number)
    assert account is not None and account["name"] == "F&O's name"
