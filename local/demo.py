"""What `make run` shows once the stack is up: a customer created in F&O appears in Dataverse, and an edit made in
Dataverse flows back to F&O, through the real webhooks, broker, dev host and ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport

PERSON = {"x-sim-user": "7a1e5b0c-0000-4000-8000-00000000d3e0"}


async def _until(probe: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    for _ in range(int(seconds * 5)):
        try:
            value = await probe()
        except NotFound:
            value = None
        if value:
            return value
        await asyncio.sleep(0.2)
    return None


async def run_demo(dataverse_url: str, fno_url: str, token: str) -> bool:
    dataverse = DataverseClient(
        ODataTransport(f"{dataverse_url}/api/data/v9.2/", StaticToken(token), default_headers=PERSON)
    )
    fno = FnoClient(ODataTransport(f"{fno_url}/data/", StaticToken(token), default_headers=PERSON))
    number = f"DEMO-{uuid.uuid4().hex[:4].upper()}"
    key = {"dataAreaId": "usmf", "CustomerAccount": number}
    try:
        print(f"\ndemo: creating customer {number} in F&O (USMF, group 30, which Dataverse does not have yet)…")
        await fno.create("CustomersV3", key, {"OrganizationName": "Demo Bikes Ltd", "PartyType": "Organization",
                                              "CustomerGroupId": "30", "CreditLimit": 7500})  # fmt: skip
        company = (await dataverse.get("cdm_companies", {"cdm_companycode": "USMF"})).values["cdm_companyid"]
        account_key = {"_msdyn_company_value": uuid.UUID(company), "accountnumber": number}
        account = await _until(lambda: dataverse.get("accounts", account_key))
        if not account:
            print("demo: the account did not arrive in Dataverse; see the dev host's log")
            return False
        print(f"demo: Dataverse account {account.values['accountid']}: name={account.values['name']!r}, "
              f"creditlimit={account.values['creditlimit']}, customer group synced first")  # fmt: skip
        print("demo: renaming the account in Dataverse…")
        await dataverse.write("accounts", account_key, {"name": "Demo Bikes International"})
        customer = await _until(lambda: _renamed(fno, key, "Demo Bikes International"))
        if not customer:
            print("demo: the change did not reach F&O; see the dev host's log")
            return False
        print(f"demo: F&O customer {number}: OrganizationName={customer['OrganizationName']!r} — synced both ways.")
        return True
    finally:
        await dataverse.close()
        await fno.close()


async def _renamed(fno: FnoClient, key: dict[str, str], name: str) -> dict[str, Any] | None:
    row = await fno.get("CustomersV3", key)
    return row.values if row.values.get("OrganizationName") == name else None
