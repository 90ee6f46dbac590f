"""The F&O connector against the F&O simulator."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from shared.connectors import errors
from shared.connectors.http import NO_RETRY
from tests.integration.connectors.helpers import faults, fno
from tests.stack import SIM_TOKEN


def _key(company: str = "usmf") -> dict[str, str]:
    return {"dataAreaId": company, "CustomerAccount": f"T-{uuid.uuid4().hex[:8]}"}


async def test_create_get_update_delete_by_full_key_across_companies(fno_sim: str) -> None:
    async with fno(fno_sim) as client:
        key = _key("usrt")
        created = await client.create(
            "CustomersV3", key, {"OrganizationName": "Created", "CreditLimit": {"$type": "decimal", "value": "99.10"}}
        )
        assert created.status == 201 and created.row and created.row["CustomerAccount"] == key["CustomerAccount"]
        row = await client.get("CustomersV3", key, select=["OrganizationName", "CreditLimit"])
        assert row.values["OrganizationName"] == "Created" and str(row.values["CreditLimit"]) == "99.10"
        assert row.version is not None  # the version inside F&O's base64 ETag
        await client.update("CustomersV3", key, {"OrganizationName": "Updated"}, if_match=str(row.etag))
        with pytest.raises(errors.ConcurrencyConflict):
            await client.update("CustomersV3", key, {"OrganizationName": "Stale"}, if_match=str(row.etag))
        await client.delete("CustomersV3", key)
        with pytest.raises(errors.NotFound):
            await client.get("CustomersV3", key)


async def test_other_companies_are_hidden_without_cross_company(fno_sim: str) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {SIM_TOKEN}"}) as http:
        url = f"{fno_sim}/data/CustomersV3(dataAreaId='usrt',CustomerAccount='004001')"
        assert (await http.get(url)).status_code == 404
        assert (await http.get(url, params={"cross-company": "true"})).status_code == 200
        listed = (await http.get(f"{fno_sim}/data/CustomersV3")).json()["value"]
        assert listed and {r["dataAreaId"] for r in listed} == {"usmf"}


async def test_upsert_patches_then_posts_on_404(fno_sim: str) -> None:
    async with fno(fno_sim) as client:
        key = _key()
        first = await client.upsert("CustomersV3", key, {"OrganizationName": "one"})
        second = await client.upsert("CustomersV3", key, {"OrganizationName": "two"})
        assert (first.status, second.status) == (201, 204)
        assert (await client.get("CustomersV3", key)).values["OrganizationName"] == "two"


async def test_key_values_are_quoted_and_escaped(fno_sim: str) -> None:
    async with fno(fno_sim) as client:
        key = {"dataAreaId": "usmf", "CustomerAccount": f"O'Neil/#{uuid.uuid4().hex[:4]}"}
        await client.create("CustomersV3", key, {"OrganizationName": "quoted"})
        assert (await client.get("CustomersV3", key)).values["CustomerAccount"] == key["CustomerAccount"]


async def test_validation_errors_carry_the_infolog_text(fno_sim: str) -> None:
    async with fno(fno_sim) as client:
        key = _key()
        await client.create("CustomersV3", key, {"OrganizationName": "dup"})
        with pytest.raises(errors.ValidationFailed) as duplicate:
            await client.create("CustomersV3", key, {"OrganizationName": "dup"})
        assert "Infolog" in duplicate.value.message and "already exists" in duplicate.value.message
        with pytest.raises(errors.ValidationFailed):
            await client.update("CustomersV3", key, {"NoSuchField": 1})


async def test_batch_failure_inside_an_outer_200(fno_sim: str) -> None:
    async with fno(fno_sim) as client:
        key = _key()
        await client.create("CustomersV3", key, {"OrganizationName": "before"})
        missing = _key()
        results = await client.batch(
            [
                client.update_operation("CustomersV3", key, {"OrganizationName": "in batch"}),
                client.update_operation("CustomersV3", missing, {"OrganizationName": "nope"}),
            ]
        )
        assert [r.ok for r in results] == [False, False]
        assert isinstance(results[1].error, errors.NotFound)
        assert (await client.get("CustomersV3", key)).values["OrganizationName"] == "before"
        results = await client.batch(
            [
                client.update_operation("CustomersV3", key, {"OrganizationName": "alone"}),
                client.create_operation("CustomersV3", missing, {}),
            ],
            atomic=False,
        )
        assert [r.ok for r in results] == [True, True]


async def test_a_write_refused_inside_a_batch_is_a_500_with_its_infolog_and_is_not_retried(fno_sim: str) -> None:
    """F&O answers a write refused inside a change set 500 with the Infolog (a captured `$batch` answer), where the
    same write alone is a 400: the connector takes it for what it is — the row's data — not a passing fault to
    retry (fidelity audit)."""
    async with fno(fno_sim, NO_RETRY) as client:
        key = _key()
        await client.create("CustomersV3", key, {"OrganizationName": "first"})
        fresh = _key()
        results = await client.batch(
            [client.create_operation("CustomersV3", key, {}), client.create_operation("CustomersV3", fresh, {})],
            atomic=False,
            continue_on_error=True,
        )
        assert [r.ok for r in results] == [False, True]
        refused = results[0].error
        assert isinstance(refused, errors.ValidationFailed) and not refused.retryable
        assert refused.status == 500 and "already exists" in refused.message


def test_a_500_is_a_passing_fault_unless_it_is_a_refused_write() -> None:
    from shared.connectors.http import error_for

    def infolog(text: str) -> bytes:
        return json.dumps({"error": {"code": "", "message": "An error has occurred.", "innererror": {
            "message": text, "type": "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException",
        }}}).encode()  # fmt: skip

    json_type = {"content-type": "application/json"}
    refused = error_for(500, json_type, infolog("Write failed for table row of type 'CustTable'. Infolog: …"), "POST")
    assert isinstance(refused, errors.ValidationFailed)
    deadlock = error_for(500, json_type, infolog("Write failed … Infolog: Deadlock, where one or more …"), "POST")
    assert isinstance(deadlock, errors.Transient)
    plain = error_for(500, json_type, b'{"error": {"code": "", "message": "An error has occurred."}}', "GET")
    assert isinstance(plain, errors.Transient)


async def test_throttling_and_gateway_pages(fno_sim: str) -> None:
    async with fno(fno_sim, NO_RETRY) as client:
        await faults(fno_sim, throttle_share=1.0, retry_after=3, remaining=1)
        with pytest.raises(errors.Throttled) as throttled:
            await client.get("LegalEntities", {"LegalEntityId": "USMF"})
        assert throttled.value.retry_after == 3
        await faults(fno_sim, error_share=1.0, error_status=502, remaining=1)
        with pytest.raises(errors.Transient):
            await client.get("LegalEntities", {"LegalEntityId": "USMF"})
        assert (await client.get("LegalEntities", {"LegalEntityId": "USMF"})).values["Name"]
