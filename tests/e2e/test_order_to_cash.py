"""The retailer's order-to-cash loop on the local stack, one leg at a time and whole: an order with its lines placed
in Dataverse reaches F&O (the lines' products healed from F&O's released products first); F&O's confirmation,
shipment and invoice show in Dataverse; on-hand changes reach the portal, the latest of a burst winning; feedback
logged in Dataverse lands in F&O as a quality non-conformance. No echo writes, nothing in the error log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from local.order_to_cash import STATUS, Apps, on_hand_key, stock
from tests.e2e.sync_stack import SyncStack, eventually, sync_stack, synced_customer, unique

COUNTED = [("dataverse", "salesorders"), ("dataverse", "salesorderdetails"), ("dataverse", "feedback"),
           ("dataverse", "sync_inventoryonhands"), ("fno", "CDSSalesOrderHeaders"), ("fno", "CDSSalesOrderLines"),
           ("fno", "InventNonConformances"), ("fno", "WarehousesOnHandV2")]  # fmt: skip


@asynccontextmanager
async def people(bridge: SyncStack) -> AsyncIterator[Apps]:
    """The two apps as their people use them (not the bridge's application user)."""
    async with bridge.dataverse() as dataverse, bridge.fno() as fno:
        yield Apps(dataverse, fno)


@pytest.fixture(scope="module")
def bridge() -> Iterator[SyncStack]:
    # An Azurite of its own: the session's holds other stacks' ledger rows and error entries.
    with sync_stack() as s:
        yield s


@pytest.fixture(scope="module")
def retailer(bridge: SyncStack) -> tuple[str, dict[str, Any]]:
    """A retailer created in F&O and synced to Dataverse: the portal's customer."""
    return asyncio.run(synced_customer(bridge, "R"))


async def test_an_order_with_two_lines_reaches_fno_with_its_products(
    bridge: SyncStack, retailer: tuple[str, dict[str, Any]]
) -> None:
    async with people(bridge) as a:
        number = unique("SO")[:10]
        await a.place_order(str(retailer[1]["accountid"]), number, [("D0001", 3, 200), ("D0002", 1, 400)])
        header = await eventually(lambda: a.fno_order(number), lambda h: h is not None)
        assert header is not None and header["OrderingCustomerAccountNumber"] == retailer[0]
        assert header["CurrencyCode"] == "USD" and header["CustomersOrderReference"] == f"PO {number}"
        lines = await eventually(lambda: a.fno_lines(number), lambda found: len(found) == 2)
        assert [(line["ProductNumber"], float(line["OrderedSalesQuantity"])) for line in lines] == [
            ("D0001", 3.0),
            ("D0002", 1.0),
        ]
        # The products the portal's catalog held but the bridge had never synced: healed from F&O's released products.
        entries = await bridge.admin("GET", "errors?map=sales_order_lines")
        assert entries["errors"] == []


async def test_status_from_confirmation_to_invoice_shows_in_dataverse(
    bridge: SyncStack, retailer: tuple[str, dict[str, Any]]
) -> None:
    async with people(bridge) as a:
        number = unique("SO")[:10]
        await a.place_order(str(retailer[1]["accountid"]), number, [("D0001", 1, 200)])
        await eventually(lambda: a.fno_order(number), lambda h: h is not None)
        for status in ("ConfirmedOrder", "PackingSlipPosted", "Invoiced"):
            await a.set_status(number, status)
            order = await eventually(
                lambda: a.dataverse_order(number),
                lambda o, s=status: bool(o and o.get("msdyn_processingstatus") == STATUS[s]),
            )
            assert order is not None


async def test_shipments_and_returns_reach_the_portal_and_the_latest_of_a_burst_wins(bridge: SyncStack) -> None:
    async with people(bridge) as a:
        item = f"P{unique('I')[-6:]}"
        await a.fno.create("WarehousesOnHandV2", on_hand_key(item), stock(50))
        await eventually(lambda: a.portal_stock(item), lambda q: q == 50)
        await a.post_stock(item, 44)  # a shipment of 6 posted
        await eventually(lambda: a.portal_stock(item), lambda q: q == 44)
        await a.post_stock(item, 46)  # a return of 2 received
        await eventually(lambda: a.portal_stock(item), lambda q: q == 46)
        for quantity in (45, 41, 38, 37, 33, 30):  # a burst of shipments, faster than the bridge applies them
            await a.post_stock(item, quantity)
        await eventually(lambda: a.portal_stock(item), lambda q: q == 30)
        await bridge.settle()
        assert await a.portal_stock(item) == 30  # and it stays there: no older quantity lands after it


async def test_feedback_on_a_product_lands_with_operations_as_a_non_conformance(
    bridge: SyncStack, retailer: tuple[str, dict[str, Any]]
) -> None:
    async with people(bridge) as a:
        number = unique("SO")[:10]
        order_id = await a.place_order(str(retailer[1]["accountid"]), number, [("D0002", 1, 400)])
        await eventually(lambda: a.fno_order(number), lambda h: h is not None)
        feedback = f"FB-{unique('F')[-6:]}"
        before = await bridge.writes("fno", "InventNonConformances")
        await a.log_feedback(feedback, "D0002", order_id, rating=2, comments="Door hinge arrived cracked")
        case = await eventually(lambda: a.fno_nonconformance(feedback), lambda c: c is not None)
        assert case is not None
        assert (case["ItemNumber"], case["ReferenceNumber"], case["ReferenceType"]) == ("D0002", number, "Sales")
        assert (case["NonConformanceType"], case["IsRush"]) == ("Cust", "Yes")
        assert case["Notes"] == "Rating 2/5: Door hinge arrived cracked"
        assert case["ProblemDescription"] == "Review of Cabinet"
        await bridge.settle()
        assert await bridge.writes("fno", "InventNonConformances") - before == 1


async def test_the_whole_loop_for_several_orders_at_once(
    bridge: SyncStack, retailer: tuple[str, dict[str, Any]]
) -> None:
    async with people(bridge) as a:
        orders = [unique("SO")[:10] for _ in range(3)]
        items = {product: await a.fno_stock(product) for product in ("D0001", "D0002")}
        writes = {name: await bridge.writes(app, name) for app, name in COUNTED}

        posting = asyncio.Lock()

        async def one_order(number: str, index: int) -> None:
            order_id = await a.place_order(
                str(retailer[1]["accountid"]), number, [("D0001", 1 + index, 200), ("D0002", 1, 400)]
            )
            await eventually(lambda: a.fno_lines(number), lambda found: len(found) == 2, seconds=60)
            assert await a.fno_order(number) is not None  # a line reaches F&O only after its order: healed first
            await a.set_status(number, "ConfirmedOrder")
            await a.set_status(number, "PackingSlipPosted")
            async with posting:  # F&O posts one shipment at a time: on-hand is never read and written by two
                await a.ship({"D0001": 1 + index, "D0002": 1})
            await a.set_status(number, "Invoiced")
            await a.log_feedback(f"FB-{number[-6:]}", "D0001", order_id, rating=5, comments="Great sound")

        await asyncio.gather(*(one_order(number, i) for i, number in enumerate(orders)))
        shipped = {"D0001": sum(1 + i for i in range(len(orders))), "D0002": len(orders)}
        for product, before in items.items():
            expected = before - shipped[product]
            await eventually(lambda p=product: a.portal_stock(p), lambda q, e=expected: q == e, seconds=60)
        for index, number in enumerate(orders):
            order = await eventually(
                lambda n=number: a.dataverse_order(n),
                lambda o: bool(o and o.get("msdyn_processingstatus") == STATUS["Invoiced"]),
                seconds=60,
            )
            assert order is not None
            header = await a.fno_order(number)
            assert header is not None and header["SalesOrderProcessingStatus"] == "Invoiced"
            lines = await a.fno_lines(number)
            assert [(x["ProductNumber"], float(x["OrderedSalesQuantity"])) for x in lines] == [
                ("D0001", 1.0 + index),
                ("D0002", 1.0),
            ]
            portal_lines = await a.dataverse_lines(number)
            assert [(float(x["quantity"]), x["_productid_value"] is not None) for x in portal_lines] == [
                (1.0 + index, True),
                (1.0, True),
            ]
            review = await a.dataverse_feedback(f"FB-{number[-6:]}")
            assert review is not None and review["rating"] == 5 and review["_sync_salesorderid_value"]
            case = await eventually(lambda n=number: a.fno_nonconformance(f"FB-{n[-6:]}"), lambda c: c is not None,
                                    seconds=60)  # fmt: skip
            assert case is not None and (case["ReferenceNumber"], case["IsRush"]) == (number, "No")
        for product, before in items.items():
            assert await a.fno_stock(product) == before - shipped[product]
        await bridge.settle()
        grown = {name: await bridge.writes(app, name) - writes[name] for app, name in COUNTED}
        n = len(orders)
        # Every person's write once and every bridge write once — nothing echoed back into the app it came from:
        assert {name: grown[name] for name in ("salesorderdetails", "feedback", "InventNonConformances")} == {
            "salesorderdetails": 2 * n, "feedback": n, "InventNonConformances": n,
        }  # fmt: skip
        assert grown["CDSSalesOrderHeaders"] == n + 3 * n  # the bridge's creates; F&O's own three status changes
        assert grown["CDSSalesOrderLines"] == 2 * n and grown["WarehousesOnHandV2"] == 2 * n
        # Into Dataverse, one write per change at most (a status or quantity already current is not written again):
        assert n + 1 <= grown["salesorders"] <= n + 3 * n and 2 <= grown["sync_inventoryonhands"] <= 2 * n
        assert (await bridge.admin("GET", "errors"))["errors"] == []  # none in this whole module
