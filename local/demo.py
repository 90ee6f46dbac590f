"""What `make run` shows once the stack is up: the retailer's order-to-cash loop on the demo data, through the real
webhooks, broker, dev host and ledger — each step one person's write in one app, and how long the bridge took to
show it in the other (measured from the write until the other app returns it).

1. a retailer signs up in F&O → a Dataverse account (its customer group, which Dataverse lacks, synced first);
2. the retailer orders two products on the portal → the order and both lines in F&O (products through F&O's
   released products);
3-5. F&O confirms, ships (status and on-hand) and invoices → each step in Dataverse;
6. the retailer reviews a product on the portal → a quality non-conformance for operations in F&O.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from local.order_to_cash import STATUS, Apps
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport

PERSON = {"x-sim-user": "7a1e5b0c-0000-4000-8000-00000000d3e0"}
WAIT_SECONDS = 30.0
T = TypeVar("T")


class StepFailed(Exception):
    """A step did not show in the other app in time."""


async def _seen(what: str, probe: Callable[[], Awaitable[T | None]], check: Callable[[T], bool], since: float) -> T:
    """Poll the other app until `check` holds; print how long after the write (at `since`) it did."""
    while True:
        value: T | None
        try:
            value = await probe()
        except NotFound:
            value = None
        if value is not None and check(value):
            print(f"demo:    ✓ {what}  ({time.monotonic() - since:.1f} s)")
            return value
        if time.monotonic() - since > WAIT_SECONDS:
            raise StepFailed(f"{what}: not seen within {WAIT_SECONDS:g} s; see the dev host's log")
        await asyncio.sleep(0.1)


async def run_demo(dataverse_url: str, fno_url: str, token: str) -> bool:
    dataverse = DataverseClient(
        ODataTransport(f"{dataverse_url}/api/data/v9.2/", StaticToken(token), default_headers=PERSON)
    )
    fno = FnoClient(ODataTransport(f"{fno_url}/data/", StaticToken(token), default_headers=PERSON))
    try:
        await _loop(Apps(dataverse, fno))
        print("demo: the order-to-cash loop ran end to end — synced both ways.")
        return True
    except StepFailed as exc:
        print(f"demo: {exc}")
        return False
    finally:
        await dataverse.close()
        await fno.close()


async def _loop(apps: Apps) -> None:
    suffix = uuid.uuid4().hex[:4].upper()
    number, order, review = f"DEMO-{suffix}", f"SO-{suffix}", f"FB-{suffix}"

    print(f"\ndemo: 1. creating customer {number} in F&O (USMF, group 30, which Dataverse does not have yet)…")
    started = time.monotonic()
    await apps.fno.create("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number},
                          {"OrganizationName": "Demo Bikes Ltd", "PartyType": "Organization",
                           "CustomerGroupId": "30", "CreditLimit": 7500})  # fmt: skip
    company = uuid.UUID(await apps.company_id())
    account: dict[str, Any] = await _seen(
        f"Dataverse account {number} 'Demo Bikes Ltd', its customer group 30 synced first",
        lambda: _values(apps.dataverse.get("accounts", {"_msdyn_company_value": company, "accountnumber": number})),
        lambda a: bool(a.get("_msdyn_customergroupid_value")),
        started,
    )

    print(f"demo: 2. the retailer orders on the portal (Dataverse): {order}, 2 x D0001 speaker, 1 x D0002 cabinet…")
    started = time.monotonic()
    order_id = await apps.place_order(str(account["accountid"]), order, [("D0001", 2, 200), ("D0002", 1, 400)])
    await _seen(
        f"F&O sales order {order} with both lines (products known through F&O's released products)",
        lambda: apps.fno_lines(order),
        lambda lines: len(lines) == 2,
        started,
    )

    for step, status, label in (("3", "ConfirmedOrder", "confirms"), ("5", "Invoiced", "invoices")):
        if status == "Invoiced":
            await _ship(apps, order)
        print(f"demo: {step}. operations {label} {order} in F&O…")
        started = time.monotonic()
        await apps.set_status(order, status)
        await _status_shown(apps, order, status, started)

    print("demo: 6. the retailer reviews the speaker on the portal: 2 of 5, 'one speaker crackles at high volume'…")
    started = time.monotonic()
    await apps.log_feedback(review, "D0001", order_id, rating=2, comments="One speaker crackles at high volume")
    await _seen(
        f"F&O quality non-conformance {review}: customer, item D0001, sales order {order}, rush",
        lambda: apps.fno_nonconformance(review),
        lambda c: (c.get("ItemNumber"), c.get("ReferenceNumber"), c.get("IsRush")) == ("D0001", order, "Yes"),
        started,
    )


async def _ship(apps: Apps, order: str) -> None:
    before = await apps.fno_stock("D0001")
    print(
        f"demo: 4. operations ships {order} in F&O: packing slip posted, on-hand of D0001 {before:g} → {before - 2:g}…"
    )
    started = time.monotonic()
    await apps.set_status(order, "PackingSlipPosted")
    await apps.ship({"D0001": 2, "D0002": 1})
    await _status_shown(apps, order, "PackingSlipPosted", started)
    await _seen(
        f"the portal's on-hand of D0001 in warehouse 11: {before - 2:g}",
        lambda: apps.portal_stock("D0001"),
        lambda quantity: quantity == before - 2,
        started,
    )


async def _status_shown(apps: Apps, order: str, status: str, started: float) -> None:
    wanted = STATUS[status]
    await _seen(
        f"Dataverse order {order}: processing status {status}",
        lambda: apps.dataverse_order(order),
        lambda o: bool(o.get("msdyn_processingstatus") == wanted),
        started,
    )


async def _values(row: Awaitable[Any]) -> dict[str, Any]:
    values: dict[str, Any] = (await row).values
    return values
