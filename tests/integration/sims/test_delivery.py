"""The Dataverse simulator works out a write's webhook steps once and keeps them until a step registration changes:
a step registered, disabled, re-enabled or narrowed after writes were made takes effect on the very next write."""

from __future__ import annotations

import uuid

from shared.connectors.auth import StaticToken
from shared.connectors.dataverse import DataverseClient
from shared.connectors.http import ODataTransport
from shared.maps.loader import load_maps
from shared.registration.dataverse import register
from shared.registration.plan import dataverse_plan
from tests.integration.connectors.helpers import receiver
from tests.integration.sims.conftest import Sim


async def _steps(client: DataverseClient, name: str) -> list[str]:
    return [
        r.values["sdkmessageprocessingstepid"]
        async for r in client.list("sdkmessageprocessingsteps", filter=f"startswith(name,'{name}')")
    ]


async def test_a_step_changed_after_writes_takes_effect_on_the_next_write(dv: Sim) -> None:
    client = DataverseClient(ODataTransport(f"{dv.url}/api/data/v9.2/", StaticToken("t")))
    company = (await client.get("cdm_companies", {"cdm_companycode": "USMF"})).values["cdm_companyid"]
    key = {"_msdyn_company_value": uuid.UUID(company), "accountnumber": f"D-{uuid.uuid4().hex[:8]}"}
    async with receiver() as hook:
        await client.write("accounts", key, {"name": "before any step"})  # worked out (no step) and remembered
        name = f"test-{uuid.uuid4().hex[:6]}"
        await register(client, dataverse_plan(load_maps(), hook.url, name), "k")
        await client.write("accounts", key, {"name": "registered"})
        await hook.wait_for(1)

        steps = await _steps(client, name)
        assert steps
        for step in steps:  # disabled: an update of the step rows, not a new row
            await client.write("sdkmessageprocessingsteps", step, {"statecode": 1})
        await client.write("accounts", key, {"name": "disabled"})
        for step in steps:
            await client.write("sdkmessageprocessingsteps", step, {"statecode": 0})
        await client.write("accounts", key, {"name": "enabled again"})
        await hook.wait_for(2)

        for step in steps:  # narrowed to a column this write does not touch
            await client.write("sdkmessageprocessingsteps", step, {"filteringattributes": "fax"})
        await client.write("accounts", key, {"name": "filtered out"})
        await client.write("accounts", key, {"fax": "555"})
        await hook.wait_for(3)
    await client.close()
    bodies = [body.decode() for _, body in hook.received]
    assert len(bodies) == 3, bodies
    assert '"registered"' in bodies[0] and '"enabled again"' in bodies[1] and '"555"' in bodies[2]
