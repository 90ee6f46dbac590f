"""Write a `DataversePlan` through the Web API, idempotently: each row is found by name and updated, or created.
The same code registers against real Dataverse and against the local simulator."""

from __future__ import annotations

from typing import Any

from shared.connectors.dataverse import DataverseClient, entity_id
from shared.connectors.wire import literal
from shared.registration.plan import (
    AUTH_WEBHOOK_KEY,
    MESSAGE_FORMAT_JSON,
    MODE_ASYNC,
    STAGE_POST_OPERATION,
    WEBHOOK_CONTRACT,
    DataversePlan,
)


class RegistrationError(RuntimeError):
    pass


async def _find(client: DataverseClient, entity_set: str, id_column: str, filter: str) -> str | None:
    async for row in client.list(entity_set, filter=filter, select=[id_column]):
        return str(row.values[id_column])
    return None


async def _save(client: DataverseClient, entity_set: str, id_column: str, name: str, values: dict[str, Any]) -> str:
    existing = await _find(client, entity_set, id_column, f"name eq {literal(name)}")
    if existing is not None:
        await client.write(entity_set, existing, values)
        return existing
    created = await client.create(entity_set, {"name": name, **values})
    found = entity_id(created.entity_id)
    if found is None:
        raise RegistrationError(f"{entity_set}: the server did not say which row it created")
    return found


async def register(client: DataverseClient, plan: DataversePlan, key: str) -> list[str]:
    """Create or update the endpoint, steps and images; returns what was done, one line each."""
    done = []
    endpoint = await _save(
        client, "serviceendpoints", "serviceendpointid", plan.endpoint_name,
        {"contract": WEBHOOK_CONTRACT, "url": plan.url, "authtype": AUTH_WEBHOOK_KEY, "authvalue": key,
         "messageformat": MESSAGE_FORMAT_JSON},
    )  # fmt: skip
    done.append(f"service endpoint {plan.endpoint_name} ({endpoint})")
    messages: dict[str, str] = {}
    for step in plan.steps:
        if step.message not in messages:
            found = await _find(client, "sdkmessages", "sdkmessageid", f"name eq {literal(step.message)}")
            if found is None:
                raise RegistrationError(f"no SDK message {step.message!r}")
            messages[step.message] = found
        message_id = messages[step.message]
        message_filter = await _find(
            client, "sdkmessagefilters", "sdkmessagefilterid",
            f"primaryobjecttypecode eq {literal(step.table)} and _sdkmessageid_value eq {message_id}",
        )  # fmt: skip
        if message_filter is None:
            raise RegistrationError(f"{step.table} does not support {step.message} steps (no message filter)")
        step_id = await _save(
            client, "sdkmessageprocessingsteps", "sdkmessageprocessingstepid", step.name,
            {"stage": STAGE_POST_OPERATION, "mode": MODE_ASYNC, "rank": 1, "supporteddeployment": 0,
             "asyncautodelete": False, "filteringattributes": step.filtering_attributes or None,
             "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint})",
             "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
             "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({message_filter})"},
        )  # fmt: skip
        for image in step.images:
            await _save(
                client, "sdkmessageprocessingstepimages", "sdkmessageprocessingstepimageid", image.name,
                {"entityalias": image.alias, "imagetype": image.image_type,
                 "messagepropertyname": image.property_name, "attributes": image.attributes,
                 "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})"},
            )  # fmt: skip
        done.append(f"step {step.name} ({step_id}), {len(step.images)} image(s)")
    return done


async def remove(client: DataverseClient, endpoint_name: str) -> list[str]:
    """Delete the endpoint's steps (their images first) and the endpoint itself."""
    endpoint = await _find(client, "serviceendpoints", "serviceendpointid", f"name eq {literal(endpoint_name)}")
    if endpoint is None:
        return [f"nothing registered under {endpoint_name!r}"]
    done = []
    # The step's handler is the multi-table lookup `eventhandler` (bound as `eventhandler_serviceendpoint`): its
    # lookup property is `_eventhandler_value`, and a filter on any other name is refused (400).
    steps = [
        r.values["sdkmessageprocessingstepid"]
        async for r in client.list("sdkmessageprocessingsteps", filter=f"_eventhandler_value eq {endpoint}")
    ]
    for step_id in dict.fromkeys(steps):
        async for image in client.list(
            "sdkmessageprocessingstepimages", filter=f"_sdkmessageprocessingstepid_value eq {step_id}"
        ):
            await client.delete("sdkmessageprocessingstepimages", image.values["sdkmessageprocessingstepimageid"])
        await client.delete("sdkmessageprocessingsteps", step_id)
        done.append(f"removed step {step_id}")
    await client.delete("serviceendpoints", endpoint)
    done.append(f"removed service endpoint {endpoint_name} ({endpoint})")
    return done
