"""GET /api/health against the real dependencies: all up → 200; any one stopped → 503 naming it."""

import httpx

from local.servicebus.config import DEFAULT_CONFIG
from tests import stack


def _health(url: str) -> httpx.Response:
    return httpx.get(f"{url}/api/health", timeout=15)


def test_health_reports_each_dependency_up_then_down() -> None:
    with stack.azurite() as ports, stack.broker(DEFAULT_CONFIG) as sb:
        env = {
            "AzureWebJobsStorage": ports.connection_string(),
            "ServiceBusConnection": sb,
            "HEALTH_TIMEOUT_SECONDS": "3",
        }
        with stack.dev_host(env) as url:
            r = _health(url)
            assert r.status_code == 200, r.text
            deps = r.json()["dependencies"]
            assert deps["table_storage"]["status"] == "up" and deps["service_bus"]["status"] == "up"
    # Both processes are stopped now; a host that still points at them must say so.
    with stack.dev_host(env) as url:
        r = _health(url)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["dependencies"]["table_storage"]["status"] == "down"
        assert body["dependencies"]["service_bus"]["status"] == "down"
        assert "AccountKey" not in r.text and "SharedAccessKey" not in r.text


def test_health_names_the_one_dependency_that_is_down() -> None:
    with stack.azurite() as ports:
        with stack.broker(DEFAULT_CONFIG) as sb:
            env = {"AzureWebJobsStorage": ports.connection_string(), "ServiceBusConnection": sb}
        with stack.dev_host({**env, "HEALTH_TIMEOUT_SECONDS": "3"}) as url:
            r = _health(url)
            assert r.status_code == 503
            deps = r.json()["dependencies"]
            assert deps["table_storage"]["status"] == "up"
            assert deps["service_bus"]["status"] == "down" and deps["service_bus"]["error"]
