"""Conformance of the Dataverse simulator, driven by Microsoft's official Python client
(`PowerPlatform-Dataverse-Client`), over HTTPS as the client insists: whatever it reads before data operations
(EntityDefinitions, picklist definitions) and every data operation the bridge relies on.

The client is configured, not mocked: its credential is a `TokenCredential` returning the simulator's bearer token,
and `requests` trusts the simulator's CA through `REQUESTS_CA_BUNDLE` (the client's session is a plain
`requests.Session`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from tests import stack


class SimulatorToken:
    """An azure-core TokenCredential that hands out the simulator's bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(stack.SIM_TOKEN, int(time.time()) + 3600)


@pytest.fixture(scope="module")
def tls_dataverse() -> Iterator[str]:
    with stack.simulator("dataverse", tls=True) as url:
        yield url


@pytest.fixture
def client(tls_dataverse: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataverseClient]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stack.sim_ca_file(tls_dataverse)))
    with DataverseClient(tls_dataverse, SimulatorToken()) as dataverse:
        yield dataverse


def _company(client: DataverseClient, code: str = "USMF") -> str:
    [row] = client.records.list("cdm_company", filter=f"cdm_companycode eq '{code}'", select=["cdm_companyid"])
    return str(row["cdm_companyid"])


def test_the_simulator_serves_https_only_with_its_own_ca(tls_dataverse: str) -> None:
    assert tls_dataverse.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):  # not trusted without the CA
        requests.get(f"{tls_dataverse}/api/data/v9.2/WhoAmI", timeout=5)
    me = requests.get(
        f"{tls_dataverse}/api/data/v9.2/WhoAmI",
        headers={"Authorization": f"Bearer {stack.SIM_TOKEN}"},
        verify=str(stack.sim_ca_file(tls_dataverse)),
        timeout=5,
    )
    assert me.status_code == 200 and me.json()["UserId"]


def test_create_get_update_delete(client: DataverseClient) -> None:
    number = f"OC-{uuid.uuid4().hex[:8]}"
    company = _company(client)
    account_id = client.records.create(
        "account",
        {
            "name": "Official Client Ltd",
            "accountnumber": number,
            "customertypecode": "Customer",  # a label: the client reads the picklist definitions to convert it
            "msdyn_company@odata.bind": f"/cdm_companies({company})",
        },
    )
    assert uuid.UUID(account_id)
    row = client.records.retrieve("account", account_id, select=["name", "accountnumber", "customertypecode"])
    assert row is not None
    assert row["name"] == "Official Client Ltd" and row["accountnumber"] == number
    assert row["customertypecode"] == 3 and row["accountid"] == account_id  # the primary key always comes back

    client.records.update("account", account_id, {"name": "Renamed by the client"})
    renamed = client.records.retrieve("account", account_id, select=["name"])
    assert renamed is not None and renamed["name"] == "Renamed by the client"

    client.records.delete("account", account_id)
    assert client.records.retrieve("account", account_id) is None  # the client's reading of a 404


def test_upsert_by_alternate_key_with_a_lookup(client: DataverseClient) -> None:
    company = uuid.UUID(_company(client))
    number = f"UP-{uuid.uuid4().hex[:8]}"
    key = {"_msdyn_company_value": company, "accountnumber": number}  # the documented lookup-in-key form
    client.records.upsert("account", [{"alternate_key": key, "record": {"name": "Upserted"}}])
    client.records.upsert("account", [{"alternate_key": key, "record": {"name": "Upserted again"}}])
    rows = client.records.list(
        "account", filter=f"accountnumber eq '{number}' and _msdyn_company_value eq {company}", select=["name"]
    )
    assert [r["name"] for r in rows] == ["Upserted again"]

    wrong = {"msdyn_company": company, "accountnumber": number}  # what real Dataverse refuses
    with pytest.raises(HttpError) as refused:
        client.records.upsert("account", [{"alternate_key": wrong, "record": {"name": "x"}}])
    assert refused.value.status_code == 400


def test_list_with_paging_order_and_count(client: DataverseClient) -> None:
    prefix = f"PG-{uuid.uuid4().hex[:6]}"
    for i in range(5):
        client.records.create("account", {"name": f"Paged {i}", "accountnumber": f"{prefix}-{i}"})
    pages = list(
        client.records.list_pages(
            "account",
            filter=f"startswith(accountnumber, '{prefix}')",
            select=["accountnumber"],
            orderby=["accountnumber desc"],
            page_size=2,
            count=True,
        )
    )
    numbers = [r["accountnumber"] for page in pages for r in page]
    assert numbers == [f"{prefix}-{i}" for i in reversed(range(5))]
    assert len(pages) == 3


def test_batch_change_set_with_a_reference(client: DataverseClient) -> None:
    number = f"BT-{uuid.uuid4().hex[:8]}"
    batch = client.batch.new()
    with batch.changeset() as cs:
        ref = cs.records.create("account", {"name": "Batched", "accountnumber": number})
        cs.records.update("account", ref, {"name": "Batched and updated"})
    result = batch.execute()
    assert not result.has_errors, [(r.status_code, r.error_message) for r in result.responses]
    rows = client.records.list("account", filter=f"accountnumber eq '{number}'", select=["name"])
    assert [r["name"] for r in rows] == ["Batched and updated"]


def test_unknown_columns_are_refused_as_dataverse_does(client: DataverseClient) -> None:
    with pytest.raises(HttpError) as selected:
        client.records.list("account", select=["nosuchcolumn"], top=1)
    assert selected.value.status_code == 400
    with pytest.raises(HttpError) as filtered:
        client.records.list("account", filter="nosuchcolumn eq 'x'")
    assert filtered.value.status_code == 400
