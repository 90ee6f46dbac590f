"""Point the local simulators at the dev host, as a user points the real apps at the deployed bridge: the
Dataverse webhook through the registration tool (Web API rows, exactly as against real Dataverse), the F&O data
events through the simulator's admin call (the F&O UI, in reality)."""

from __future__ import annotations

import httpx

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.http import ODataTransport
from shared.maps.loader import load_maps
from shared.registration.dataverse import register
from shared.registration.plan import dataverse_plan


async def connect_apps(host_url: str, dataverse_url: str, fno_url: str, token: str, keys: dict[str, str]) -> None:
    client = DataverseClient(ODataTransport(dataverse_url.rstrip("/") + "/api/data/v9.2/", StaticToken(token)))
    try:
        plan = dataverse_plan(load_maps(), f"{host_url}/api/webhooks/dataverse")
        await register(client, plan, keys.get("dataverse_webhook") or keys.get("default", ""))
    finally:
        await client.close()
    async with httpx.AsyncClient() as http:
        fno_key = keys.get("fno_webhook") or keys.get("default", "")
        response = await http.post(
            f"{fno_url.rstrip('/')}/_admin/data-events", json={"url": f"{host_url}/api/webhooks/fno?code={fno_key}"}
        )
        response.raise_for_status()
