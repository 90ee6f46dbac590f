"""The Dataverse connector against the Dataverse simulator: every behaviour apply relies on."""

from __future__ import annotations

import uuid

import httpx
import pytest

from shared.connectors import errors
from shared.connectors.dataverse import DataverseClient, WriteMode, entity_id
from shared.connectors.http import NO_RETRY, RetryPolicy
from tests.integration.connectors.helpers import RecordingSleep, dataverse, faults, writes


async def _company(client: DataverseClient, code: str = "USMF") -> uuid.UUID:
    row = await client.get("cdm_companies", {"cdm_companycode": code}, select=["cdm_companyid"])
    return uuid.UUID(row.values["cdm_companyid"])


def _account(company: uuid.UUID, number: str) -> dict[str, object]:
    return {"_msdyn_company_value": company, "accountnumber": number}


async def test_upsert_creates_then_updates_and_reads_by_id_and_alternate_key(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        assert isinstance(client, DataverseClient)
        company = await _company(client)
        key = _account(company, f"T-{uuid.uuid4().hex[:8]}")
        created = await client.write(
            "accounts", key, {"name": "First", "creditlimit": {"$type": "decimal", "value": "10.25"}}
        )
        assert created.status == 204 and entity_id(created.entity_id)
        updated = await client.write("accounts", key, {"name": "Second"}, return_row=True)
        assert updated.status == 200 and updated.row is not None and updated.row["name"] == "Second"
        by_key = await client.get("accounts", key, select=["name", "creditlimit"])
        # Dataverse always returns the primary key, whatever $select names
        row_id = entity_id(created.entity_id)
        assert by_key.values == {"name": "Second", "creditlimit": pytest.approx(10.25), "accountid": row_id}
        assert str(by_key.values["creditlimit"]) == "10.25"  # exact decimals, never floats
        assert by_key.etag and by_key.etag.startswith('W/"') and by_key.version
        by_id = await client.get("accounts", str(entity_id(created.entity_id)))
        assert by_id.values["accountnumber"] == key["accountnumber"]
        assert "msdyn_company" not in by_id.values and by_id.values["_msdyn_company_value"] == str(company)


async def test_create_only_and_update_only(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        key = _account(await _company(client), f"T-{uuid.uuid4().hex[:8]}")
        with pytest.raises(errors.NotFound):
            await client.write("accounts", key, {"name": "x"}, mode=WriteMode.UPDATE)
        await client.write("accounts", key, {"name": "x"}, mode=WriteMode.CREATE)
        with pytest.raises(errors.ConcurrencyConflict):
            await client.write("accounts", key, {"name": "y"}, mode=WriteMode.CREATE)


async def test_conditional_update_and_delete_with_etags(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        key = _account(await _company(client), f"T-{uuid.uuid4().hex[:8]}")
        await client.write("accounts", key, {"name": "v1"})
        row = await client.get("accounts", key)
        await client.write("accounts", key, {"name": "v2"}, if_match=row.etag)
        with pytest.raises(errors.ConcurrencyConflict) as stale:
            await client.write("accounts", key, {"name": "v3"}, if_match=row.etag)
        assert stale.value.status == 412 and "RowVersion" in stale.value.message
        with pytest.raises(errors.ConcurrencyConflict):
            await client.delete("accounts", key, if_match=row.etag)
        await client.delete("accounts", key, tag="bridge:test")
        with pytest.raises(errors.NotFound):
            await client.get("accounts", key)
        with pytest.raises(errors.NotFound):
            await client.delete("accounts", key)


async def test_lookups_bind_by_alternate_key_and_must_resolve(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        company = await _company(client)
        key = _account(company, f"T-{uuid.uuid4().hex[:8]}")
        group = ("msdyn_customergroups", {"_msdyn_company_value": company, "msdyn_groupid": "10"})
        await client.write("accounts", key, {"name": "with group"}, lookups={"msdyn_customergroupid": group})
        row = await client.get("accounts", key)
        assert row.values["_msdyn_customergroupid_value"]
        missing = ("msdyn_customergroups", {"_msdyn_company_value": company, "msdyn_groupid": "NOPE"})
        with pytest.raises(errors.NotFound) as unresolved:
            await client.write("accounts", key, {}, lookups={"msdyn_customergroupid": missing})
        assert "msdyn_customergroup" in unresolved.value.message
        await client.write("accounts", key, {}, lookups={"msdyn_customergroupid": None})
        assert (await client.get("accounts", key)).values["_msdyn_customergroupid_value"] is None


async def test_list_follows_server_pages_and_filters(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        company = await _company(client)
        marker = uuid.uuid4().hex[:8]
        for i in range(7):
            await client.write("accounts", _account(company, f"P-{marker}-{i}"), {"name": f"page {marker}"})
        rows = [
            r async for r in client.list("accounts", filter=f"name eq 'page {marker}'", select=["name"], page_size=3)
        ]
        assert len(rows) == 7 and {r.values["name"] for r in rows} == {f"page {marker}"}


async def test_quotes_in_key_values_are_escaped(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        key = _account(await _company(client), f"O'Brien & Sons/{uuid.uuid4().hex[:4]}")
        await client.write("accounts", key, {"name": "quoted"})
        assert (await client.get("accounts", key)).values["accountnumber"] == key["accountnumber"]


async def test_batch_change_set_is_atomic_and_continue_on_error_reports_each(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        company = await _company(client)
        good, bad = _account(company, f"B-{uuid.uuid4().hex[:8]}"), _account(company, f"B-{uuid.uuid4().hex[:8]}")
        results = await client.batch(
            [
                client.write_operation("accounts", good, {"name": "ok"}),
                client.write_operation("accounts", bad, {"nosuch": 1}),
            ]
        )
        assert not results[0].ok and not results[1].ok
        assert isinstance(results[1].error, errors.ValidationFailed) and "nosuch" in results[1].error.message
        with pytest.raises(errors.NotFound):
            await client.get("accounts", good)  # rolled back with its change set
        results = await client.batch(
            [
                client.write_operation("accounts", bad, {"nosuch": 1}),
                client.write_operation("accounts", good, {"name": "ok"}),
            ],
            atomic=False,
            continue_on_error=True,
        )
        assert [r.ok for r in results] == [False, True]
        assert (await client.get("accounts", good)).values["name"] == "ok"


async def test_throttling_honours_retry_after_and_transient_errors_are_retried(dataverse_sim: str) -> None:
    sleep = RecordingSleep()
    async with dataverse(dataverse_sim, RetryPolicy(attempts=5, total_seconds=30), sleep) as client:
        await faults(dataverse_sim, throttle_share=1.0, retry_after=2, remaining=2)
        try:
            await client.get("cdm_companies", {"cdm_companycode": "USMF"})
        finally:
            await faults(dataverse_sim)
        assert sleep.waits[:2] == [2.0, 2.0]
        sleep.waits.clear()
        await faults(dataverse_sim, error_share=1.0, error_status=503, remaining=1)
        await client.get("cdm_companies", {"cdm_companycode": "USMF"})
        assert len(sleep.waits) == 1 and sleep.waits[0] <= 10


async def test_a_long_retry_after_is_raised_not_slept(dataverse_sim: str) -> None:
    sleep = RecordingSleep()
    async with dataverse(dataverse_sim, RetryPolicy(attempts=5, total_seconds=5), sleep) as client:
        await faults(dataverse_sim, throttle_share=1.0, retry_after=60, remaining=1)
        with pytest.raises(errors.Throttled) as throttled:
            await client.get("cdm_companies", {"cdm_companycode": "USMF"})
        await faults(dataverse_sim)
        assert throttled.value.retry_after == 60 and sleep.waits == []


async def test_gateway_html_is_transient_and_bad_tokens_are_unauthorized(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim, NO_RETRY) as client:
        await faults(dataverse_sim, error_share=1.0, error_status=502, remaining=1)
        with pytest.raises(errors.Transient) as gateway:
            await client.get("cdm_companies", {"cdm_companycode": "USMF"})
        assert "HTML" in gateway.value.message
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{dataverse_sim}/api/data/v9.2/accounts", headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401 and response.json()["error"]["message"]


async def test_writes_are_counted_per_table(dataverse_sim: str) -> None:
    async with dataverse(dataverse_sim) as client:
        before = await writes(dataverse_sim, "accounts")
        await client.write("accounts", _account(await _company(client), f"C-{uuid.uuid4().hex[:8]}"), {"name": "n"})
        assert await writes(dataverse_sim, "accounts") == before + 1


async def test_rows_address_company_striped_tables_by_the_documented_lookup_key(dataverse_sim: str) -> None:
    """`DataverseRows` turns a map's key (company code, account number) into the form real Dataverse accepts,
    `_msdyn_company_value=<guid>`, for reads, writes (and their `@odata.bind` targets) and deletes."""
    from shared.maps.loader import load_maps
    from shared.maps.transform import LookupRef
    from shared.sync.rows import DataverseRows

    maps = {name: compiled.map for name, compiled in load_maps().maps.items()}
    customers = maps["customers"]
    async with dataverse(dataverse_sim) as client:
        rows = DataverseRows(client, maps)
        number = f"R-{uuid.uuid4().hex[:8]}"
        key = await rows.key(customers, {"msdyn_company": "USMF", "accountnumber": number})
        assert key == {"_msdyn_company_value": await _company(client), "accountnumber": number}
        group = LookupRef("customer_groups", "msdyn_customergroups", {"msdyn_company": "USMF", "msdyn_groupid": "10"})
        written = await rows.write(
            customers, {"msdyn_company": "USMF", "accountnumber": number}, {"name": "Rows"},
            {"msdyn_customergroupid": group}, if_match=None, create=True, tag="t",
        )  # fmt: skip
        assert written.row_id
        current = await rows.read(customers, {"msdyn_company": "USMF", "accountnumber": number})
        assert current is not None and current.record["name"] == "Rows"
        assert current.record["msdyn_customergroupid"]["id"]
        await rows.delete(customers, {"msdyn_company": "USMF", "accountnumber": number}, tag="t")
        assert await rows.read(customers, {"msdyn_company": "USMF", "accountnumber": number}) is None
