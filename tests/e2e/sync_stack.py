"""The whole local stack for apply tests: Azurite, the broker, both simulators and the dev host, webhooks
registered; helpers to act as a person in either app and to wait for the bridge."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from local.connect import connect_apps
from local.processes import AzuritePorts
from local.servicebus.config import DEFAULT_CONFIG
from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.errors import NotFound
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport
from tests import stack

KEYS = {"master": "e2e-master", "default": "e2e-default", "dataverse_webhook": "e2e-dv", "fno_webhook": "e2e-fno"}
PERSON = {"x-sim-user": "7a1e5b0c-0000-4000-8000-000000000001"}  # a person, not the bridge's application user
T = TypeVar("T")


@dataclass
class SyncStack:
    host: str
    dataverse_url: str
    fno_url: str
    servicebus: str
    storage: AzuritePorts | None = None  # the bridge's Azurite

    def dataverse(self) -> DataverseClient:
        transport = ODataTransport(f"{self.dataverse_url}/api/data/v9.2/", StaticToken(stack.SIM_TOKEN),
                                   default_headers=PERSON)  # fmt: skip
        return DataverseClient(transport)

    def fno(self) -> FnoClient:
        transport = ODataTransport(f"{self.fno_url}/data/", StaticToken(stack.SIM_TOKEN), default_headers=PERSON)
        return FnoClient(transport)

    async def stats(self, app: str) -> dict[str, Any]:
        url = self.dataverse_url if app == "dataverse" else self.fno_url
        async with httpx.AsyncClient() as http:
            result: dict[str, Any] = (await http.get(f"{url}/_admin/stats")).json()
            return result

    async def writes(self, app: str, entity_set: str) -> int:
        return int((await self.stats(app))["writes"].get(entity_set, 0))

    async def _sim_setting(self, app: str, setting: str, values: dict[str, Any]) -> None:
        url = self.dataverse_url if app == "dataverse" else self.fno_url
        async with httpx.AsyncClient() as http:
            if values:
                (await http.post(f"{url}/_admin/{setting}", json=values)).raise_for_status()
            else:
                (await http.delete(f"{url}/_admin/{setting}")).raise_for_status()

    async def faults(self, app: str, **settings: Any) -> None:
        """Injected faults in a simulator (throttling, errors, latency); none given: no faults."""
        await self._sim_setting(app, "faults", settings)

    async def delivery(self, app: str, **chaos: Any) -> None:
        """Webhook delivery chaos in a simulator (duplicate, shuffle); none given: back to orderly delivery."""
        await self._sim_setting(app, "delivery", chaos)

    async def admin(self, method: str, path: str) -> Any:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.request(
                method, f"{self.host}/api/{path}", headers={"x-functions-key": KEYS["master"]}
            )
            response.raise_for_status()
            return response.json()

    async def settle(self, seconds: float = 1.5) -> None:
        """Wait until both simulators have delivered every webhook and the bridge has had time to apply them."""
        for _ in range(int(seconds * 10)):
            pending = 0
            for app in ("dataverse", "fno"):
                pending += (await self.stats(app))["webhooks"]["pending"]
            if pending == 0:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(seconds)


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], seconds: float = 20.0) -> T:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = await probe()
        if check(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {seconds} s; last value: {value!r}")
        await asyncio.sleep(0.2)


def _bridge_env(azurite: AzuritePorts, connection: str, dataverse_url: str, fno_url: str) -> dict[str, str]:
    """The dev host's settings for a test stack: short connector retries so that faults surface fast."""
    return {
        "AzureWebJobsStorage": azurite.connection_string(),
        "ServiceBusConnection": connection,
        "DATAVERSE_URL": dataverse_url,
        "FNO_URL": fno_url,
        "LOCAL_BEARER_TOKEN": stack.SIM_TOKEN,
        "FUNCTION_KEYS": json.dumps(KEYS),
        "CONNECTOR_RETRY_ATTEMPTS": "2",
        "CONNECTOR_RETRY_SECONDS": "2",
    }


@contextmanager
def sync_stack(
    azurite: AzuritePorts | None = None,
    before_connect: Callable[[SyncStack], Awaitable[None]] | None = None,
    **extra_env: str,
) -> Iterator[SyncStack]:
    """`azurite`: the storage to use; None: an Azurite of its own, started with the rest (so the ledger, errors and
    conflicts hold this stack's rows only). `before_connect`: runs once everything is up but before the apps'
    webhooks point at the bridge (data that existed before the bridge)."""
    with stack.apps(DEFAULT_CONFIG, azurite) as apps:
        env = _bridge_env(apps.storage, apps.servicebus, apps.dataverse_url, apps.fno_url) | extra_env
        with stack.dev_host(env) as host:
            bridge = SyncStack(host, apps.dataverse_url, apps.fno_url, apps.servicebus, apps.storage)
            if before_connect is not None:
                asyncio.run(before_connect(bridge))
            asyncio.run(connect_apps(host, apps.dataverse_url, apps.fno_url, stack.SIM_TOKEN, KEYS))
            yield bridge


@contextmanager
def crashable_sync_stack(
    azurite: AzuritePorts | None = None, broker_config: Path = DEFAULT_CONFIG, **extra_env: str
) -> Iterator[tuple[SyncStack, stack.DevHost]]:
    """`sync_stack`, with the dev host handed out so that a test can kill it and start it again."""
    with stack.apps(broker_config, azurite) as apps:
        env = _bridge_env(apps.storage, apps.servicebus, apps.dataverse_url, apps.fno_url) | extra_env
        with stack.restartable_dev_host(env) as host:
            asyncio.run(connect_apps(host.url, apps.dataverse_url, apps.fno_url, stack.SIM_TOKEN, KEYS))
            yield SyncStack(host.url, apps.dataverse_url, apps.fno_url, apps.servicebus, apps.storage), host


# --- a person's view of the two apps ---------------------------------------------------------------------------


async def dataverse_account(s: SyncStack, company: str, number: str) -> dict[str, Any] | None:
    """The account a person sees in Dataverse, by company code and account number; None if there is none."""
    company_guid = await company_id(s, company)
    async with s.dataverse() as client:
        try:
            row = await client.get("accounts", {"_msdyn_company_value": company_guid, "accountnumber": number})
        except NotFound:
            return None
        return row.values


async def fno_customer(s: SyncStack, company: str, number: str) -> dict[str, Any] | None:
    async with s.fno() as client:
        try:
            return (await client.get("CustomersV3", {"dataAreaId": company, "CustomerAccount": number})).values
        except NotFound:
            return None


async def synced_customer(bridge: SyncStack, prefix: str) -> tuple[str, dict[str, Any]]:
    """A customer created in F&O and synced to Dataverse, everything settled: (account number, the account)."""
    number = unique(prefix)
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Original", "PartyType": "Organization", "CustomerGroupId": "10"},
        )
    account = await eventually(lambda: dataverse_account(bridge, "USMF", number), lambda a: a is not None)
    assert account is not None
    await bridge.settle()
    return number, account


async def company_id(bridge: SyncStack, code: str) -> uuid.UUID:
    async with bridge.dataverse() as client:
        return uuid.UUID(str((await client.get("cdm_companies", {"cdm_companycode": code})).values["cdm_companyid"]))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}".upper()
