"""GET /api/health against real Azurite: up → 200, stopped → 503."""

import httpx

from tests import stack


def test_health_reports_table_storage_up_then_down() -> None:
    with stack.azurite() as ports:
        env = {"AzureWebJobsStorage": ports.connection_string(), "HEALTH_TIMEOUT_SECONDS": "2"}
        with stack.dev_host(env) as url:
            r = httpx.get(f"{url}/api/health", timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["dependencies"]["table_storage"]["status"] == "up"
            # stop Azurite while the host runs
            ports_still_known = ports
    with stack.dev_host(
        {"AzureWebJobsStorage": ports_still_known.connection_string(), "HEALTH_TIMEOUT_SECONDS": "2"}
    ) as url:
        r = httpx.get(f"{url}/api/health", timeout=10)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["dependencies"]["table_storage"]["status"] == "down"
        assert "AccountKey" not in r.text
