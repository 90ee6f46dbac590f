"""GET /api/health against the real dependencies: all up → 200; any one stopped → 503 naming it. The API's other
routes answer a storage outage as 503 problem+json with Retry-After too, never a 500."""

import json
import shutil
from pathlib import Path

import httpx

from local.processes import ROOT
from local.servicebus.config import DEFAULT_CONFIG
from tests import stack

KEYS = {"master": "health-master"}


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
    with stack.dev_host({**env, "FUNCTION_KEYS": json.dumps(KEYS)}) as url:
        r = _health(url)
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["dependencies"]["table_storage"]["status"] == "down"
        assert body["dependencies"]["service_bus"]["status"] == "down"
        assert "AccountKey" not in r.text and "SharedAccessKey" not in r.text
        # Nothing can be started, read or changed while storage is down: a transient outage the caller retries.
        master = {"x-functions-key": KEYS["master"]}
        routes = [("POST", "maps/customers/sync"), ("GET", "sync/some-run"), ("GET", "drift"),
                  ("POST", "sync/some-run/rerun-failed"), ("GET", "status"), ("GET", "errors"), ("GET", "conflicts"),
                  ("POST", "maps/customers/pause")]  # fmt: skip
        for method, path in routes:
            r = httpx.request(method, f"{url}/api/{path}", headers=master, timeout=60)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json") and r.headers["retry-after"]
            assert r.json()["status"] == 503 and "Traceback" not in r.text


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


def test_maps_that_do_not_load_are_named_by_health_and_answered_503(tmp_path: Path) -> None:
    """A map set with a dependency cycle leaves the bridge unable to apply or sync: health says so with the problem,
    and the routes answer 503 problem+json naming it (they answered 404 to a sync, and a 500 and a stack trace to a
    run's status — go-live review)."""
    for f in (ROOT / "maps" / "tables").glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    groups = tmp_path / "customer_groups.yaml"
    groups.write_text(groups.read_text().replace("depends_on: [companies]", "depends_on: [companies, customers]"))
    with stack.azurite() as ports, stack.broker(DEFAULT_CONFIG) as sb:
        env = {"AzureWebJobsStorage": ports.connection_string(), "ServiceBusConnection": sb,
               "MAPS_DIR": str(tmp_path), "FUNCTION_KEYS": json.dumps(KEYS)}  # fmt: skip
        with stack.dev_host(env) as url:
            r = _health(url)
            assert r.status_code == 503 and r.json()["dependencies"]["table_storage"]["status"] == "up"
            maps = r.json()["dependencies"]["maps"]
            assert maps["status"] == "down" and "dependency cycle" in maps["error"], maps
            master = {"x-functions-key": KEYS["master"]}
            for method, path in (("POST", "maps/customers/sync"), ("GET", "sync/some-run"), ("GET", "drift")):
                r = httpx.request(method, f"{url}/api/{path}", headers=master, timeout=60)
                assert r.status_code == 503, (path, r.status_code, r.text)
                assert "dependency cycle" in r.json()["detail"] and "Traceback" not in r.text
