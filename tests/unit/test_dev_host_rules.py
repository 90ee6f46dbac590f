"""The dev host's pure rules: route templates, function keys, local settings files."""

import json
from pathlib import Path

import pytest

from local.host.keys import FunctionKeysError, is_authorized, parse_function_keys, presented_key
from local.host.routes import RouteTemplateError, compile_route
from local.settings_file import LocalSettingsError, read_values

KEYS = {"master": "m", "default": "d", "orders": "o"}


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("health", "health", {}),
        ("items/{id}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/abc", None),
        ("items/{id:int}", "items/-7", {"id": "-7"}),
        ("items/{id?}", "items", {}),
        ("items/{id?}", "items/9", {"id": "9"}),
        ("files/{*path}", "files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("webhooks/{source:alpha}", "webhooks/fno", {"source": "fno"}),
        ("a/{x}-{y}", "a/1-2", {"x": "1", "y": "2"}),
        ("Health", "health", None),
    ],
)
def test_route_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert compile_route(template).match(path) == expected


def test_unknown_constraint_is_refused() -> None:
    with pytest.raises(RouteTemplateError):
        compile_route("items/{id:nonsense}")


@pytest.mark.parametrize(
    ("level", "function", "key", "ok"),
    [
        ("anonymous", "x", None, True),
        ("function", "orders", None, False),
        ("function", "orders", "o", True),
        ("function", "orders", "d", True),
        ("function", "orders", "m", True),
        ("function", "other", "o", False),
        ("function", "orders", "wrong", False),
        ("admin", "orders", "d", False),
        ("admin", "orders", "o", False),
        ("admin", "orders", "m", True),
    ],
)
def test_auth_levels(level: str, function: str, key: str | None, ok: bool) -> None:
    assert is_authorized(level, function, key, KEYS) is ok  # type: ignore[arg-type]


def test_key_from_header_wins_over_query() -> None:
    assert presented_key({"x-functions-key": "h"}, {"code": "q"}) == "h"
    assert presented_key({}, {"code": "q"}) == "q"
    assert presented_key({}, {}) is None


def test_function_keys_setting_is_validated() -> None:
    assert parse_function_keys('{"default": "k"}') == {"default": "k"}
    assert parse_function_keys(None) == {}
    with pytest.raises(FunctionKeysError):
        parse_function_keys("{not json")
    with pytest.raises(FunctionKeysError):
        parse_function_keys('{"default": 5}')


def test_local_settings_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"A": "1", "B": 2}}))
    assert read_values(path) == {"A": "1", "B": "2"}
    path.write_text("{oops")
    with pytest.raises(LocalSettingsError, match=r"local\.settings\.json"):
        read_values(path)


def test_example_settings_hold_every_local_key() -> None:
    values = read_values(Path(__file__).parents[2] / "local.settings.example.json")
    keys = parse_function_keys(values["FUNCTION_KEYS"])
    assert {"master", "default"} <= keys.keys()
