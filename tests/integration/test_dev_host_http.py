"""The dev host serving a real Functions app over a real socket."""

from collections.abc import Iterator

import httpx
import pytest

from tests import stack

KEYS = '{"master": "mk", "default": "dk", "get_item": "item-key"}'


@pytest.fixture(scope="module")
def base_url(storage_connection_string: str) -> Iterator[str]:
    env = {"FUNCTION_KEYS": KEYS, "AzureWebJobsStorage": storage_connection_string}
    with stack.dev_host(env, app="tests.fixtures.sample_app:app") as url:
        yield url


def test_async_function_with_route_params_query_and_headers(base_url: str) -> None:
    r = httpx.get(f"{base_url}/api/items/42?x=1&y=two", headers={"x-functions-key": "item-key"})
    assert r.status_code == 200
    assert r.json() == {"id": "42", "q": {"x": "1", "y": "two"}, "method": "GET"}
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-handler"] == "async"


def test_sync_function_gets_body_bytes_context_and_catch_all(base_url: str) -> None:
    body = "héllo\nwörld".encode()
    r = httpx.put(
        f"{base_url}/api/items/7/notes/a/b?code=dk", content=body, headers={"content-type": "text/plain; charset=utf-8"}
    )
    assert r.status_code == 201
    data = r.json()
    assert data["id"] == "7" and data["rest"] == "a/b"
    assert data["body"] == "héllo\nwörld"
    assert data["content_type"] == "text/plain; charset=utf-8"
    assert data["function"] == "put_note" and data["invocation_id"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/items/1", {}, 401),
        ("/api/items/1?code=wrong", {}, 401),
        ("/api/items/1", {"x-functions-key": "dk"}, 200),
        ("/api/items/1?code=mk", {}, 200),
        ("/api/admin-only?code=dk", {}, 401),
        ("/api/admin-only?code=item-key", {}, 401),
        ("/api/admin-only", {"x-functions-key": "mk"}, 200),
        ("/api/open", {}, 200),
    ],
)
def test_auth_levels_are_enforced(base_url: str, path: str, headers: dict[str, str], status: int) -> None:
    r = httpx.get(f"{base_url}{path}", headers=headers)
    assert r.status_code == status
    if status == 401:
        assert r.headers["content-type"] == "application/problem+json"
        assert "mk" not in r.text and "dk" not in r.text


def test_route_constraints_methods_and_unknown_paths(base_url: str) -> None:
    assert httpx.get(f"{base_url}/api/items/abc?code=dk").status_code == 404
    r = httpx.delete(f"{base_url}/api/items/1?code=dk")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    assert httpx.get(f"{base_url}/nope").status_code == 404


def test_body_and_custom_headers_round_trip(base_url: str) -> None:
    r = httpx.post(f"{base_url}/api/open", content=b"\x00\x01binary")
    assert r.content == b"\x00\x01binary"
    assert r.headers["x-custom"] == "yes"


def test_a_failing_function_answers_problem_json_without_internals(base_url: str) -> None:
    r = httpx.get(f"{base_url}/api/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in r.text and "Traceback" not in r.text
