"""The retailer's order-to-cash loop as people do it in the two apps (the demo and the end-to-end tests share it):
a retailer places an order on the Dataverse portal; F&O confirms, ships (on-hand falls) and invoices it; the
retailer reviews the product. Each step is one person's write through the apps' own APIs; the bridge does the rest."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import NotFound
from shared.connectors.fno import FnoClient

COMPANY, WAREHOUSE = "usmf", "11"
# F&O SalesStatus symbol → Dataverse msdyn_processingstatus choice (maps/tables/order_to_cash.yaml).
STATUS = {
    "None": 192350000,
    "Active": 192350001,
    "ConfirmedOrder": 192350002,
    "PickingListRegistered": 192350003,
    "PackingSlipPosted": 192350004,
    "Invoiced": 192350005,
    "Cancelled": 192350006,
}
PORTAL = 1  # feedback.source: Portal


@dataclass
class Apps:
    dataverse: DataverseClient
    fno: FnoClient

    async def company_id(self) -> str:
        row = await self.dataverse.get("cdm_companies", {"cdm_companycode": COMPANY.upper()})
        return str(row.values["cdm_companyid"])

    async def product_id(self, number: str) -> str:
        return str((await self.dataverse.get("products", {"msdyn_productnumber": number})).values["productid"])

    # --- the portal (Dataverse) ----------------------------------------------------------------------------------

    async def place_order(self, account_id: str, number: str, lines: list[tuple[str, float, float]]) -> str:
        """A retailer's order with its lines, as the portal writes them; returns the order's row id."""
        company = await self.company_id()
        currency = (await self.dataverse.get("transactioncurrencies", {"isocurrencycode": "USD"})).values
        order = await self.dataverse.create(
            "salesorders",
            {"msdyn_salesordernumber": number, "name": f"Portal order {number}",
             "msdyn_customersorderreference": f"PO {number}", "requestdeliveryby": "2026-12-15"},
            lookups={"msdyn_company": ("cdm_companies", company), "customerid": ("accounts", account_id),
                     "transactioncurrencyid": ("transactioncurrencies", str(currency["transactioncurrencyid"]))},
        )  # fmt: skip
        order_id = _row_id(order.entity_id)
        for sequence, (product, quantity, price) in enumerate(lines, start=1):
            await self.dataverse.create(
                "salesorderdetails",
                {"msdyn_salesordernumber": number, "sequencenumber": sequence, "quantity": quantity,
                 "priceperunit": price},
                lookups={"msdyn_company": ("cdm_companies", company), "salesorderid": ("salesorders", order_id),
                         "productid": ("products", await self.product_id(product))},
            )  # fmt: skip
        return order_id

    async def log_feedback(
        self, number: str, product: str, order_id: str | None, rating: int, comments: str, title: str | None = None
    ) -> str:
        name = (await self.dataverse.get("products", {"msdyn_productnumber": product})).values.get("name")
        lookups = {"regardingobjectid": ("products", await self.product_id(product))}
        if order_id:
            lookups["sync_salesorderid"] = ("salesorders", order_id)
        row = await self.dataverse.create(
            "feedback",
            {"sync_feedbacknumber": number, "title": title or f"Review of {name}", "comments": comments,
             "rating": rating, "maxrating": 5, "source": PORTAL},
            lookups=lookups,
        )  # fmt: skip
        return _row_id(row.entity_id)

    async def dataverse_order(self, number: str) -> dict[str, Any] | None:
        key = {"_msdyn_company_value": uuid.UUID(await self.company_id()), "msdyn_salesordernumber": number}
        try:
            return (await self.dataverse.get("salesorders", key)).values
        except NotFound:
            return None

    async def dataverse_lines(self, number: str) -> list[dict[str, Any]]:
        where = f"_msdyn_company_value eq {await self.company_id()} and msdyn_salesordernumber eq '{number}'"
        rows = [row.values async for row in self.dataverse.list("salesorderdetails", filter=where)]
        return sorted(rows, key=lambda r: int(r["sequencenumber"]))

    async def dataverse_feedback(self, number: str) -> dict[str, Any] | None:
        try:
            return (await self.dataverse.get("feedback", {"sync_feedbacknumber": number})).values
        except NotFound:
            return None

    async def portal_stock(self, item: str) -> float | None:
        key = {"_msdyn_company_value": uuid.UUID(await self.company_id()), "sync_itemnumber": item,
               "sync_warehouse": WAREHOUSE}  # fmt: skip
        try:
            row = (await self.dataverse.get("sync_inventoryonhands", key)).values
        except NotFound:
            return None
        value = row.get("sync_onhandquantity")
        return None if value is None else float(value)

    # --- operations (F&O) ------------------------------------------------------------------------------------------

    async def set_status(self, number: str, status: str) -> None:
        key = {"dataAreaId": COMPANY, "SalesOrderNumber": number}
        await self.fno.update("CDSSalesOrderHeaders", key, {"SalesOrderProcessingStatus": status})

    async def fno_stock(self, item: str) -> float:
        row = await self.fno.get("WarehousesOnHandV2", on_hand_key(item))
        return float(row.values["OnHandQuantity"])

    async def post_stock(self, item: str, on_hand: float) -> None:
        """A posting that leaves `on_hand` of the item in the warehouse (a shipment lowers it, a return raises it)."""
        await self.fno.update("WarehousesOnHandV2", on_hand_key(item), stock(on_hand))

    async def ship(self, quantities: dict[str, float]) -> None:
        """A packing slip posted: each item's on-hand and available quantities fall by what left the warehouse."""
        for item, quantity in quantities.items():
            row = (await self.fno.get("WarehousesOnHandV2", on_hand_key(item))).values
            left = {n: float(row.get(n) or 0) - quantity for n in ("OnHandQuantity", "AvailableOnHandQuantity")}
            await self.fno.update("WarehousesOnHandV2", on_hand_key(item), left)

    async def fno_order(self, number: str) -> dict[str, Any] | None:
        try:
            return (
                await self.fno.get("CDSSalesOrderHeaders", {"dataAreaId": COMPANY, "SalesOrderNumber": number})
            ).values
        except NotFound:
            return None

    async def fno_lines(self, number: str) -> list[dict[str, Any]]:
        where = f"dataAreaId eq '{COMPANY}' and SalesOrderNumber eq '{number}'"
        rows = [row.values async for row in self.fno.list("CDSSalesOrderLines", filter=where)]
        return sorted(rows, key=lambda r: int(r["LineCreationSequenceNumber"]))

    async def fno_nonconformance(self, number: str) -> dict[str, Any] | None:
        try:
            return (
                await self.fno.get("InventNonConformances", {"dataAreaId": COMPANY, "NonConformanceId": number})
            ).values
        except NotFound:
            return None


def on_hand_key(item: str) -> dict[str, str]:
    return {"dataAreaId": COMPANY, "ItemNumber": item, "InventoryWarehouseId": WAREHOUSE}


def stock(on_hand: float) -> dict[str, float]:
    return {"OnHandQuantity": on_hand, "AvailableOnHandQuantity": on_hand, "ReservedOnHandQuantity": 0}


def _row_id(entity_url: str | None) -> str:
    """The new row's id from its `OData-EntityId` (…/salesorders(<guid>))."""
    if not entity_url or "(" not in entity_url:
        raise ValueError(f"the app did not say which row it created: {entity_url!r}")
    return entity_url.rsplit("(", 1)[1].rstrip(")")
