"""The dev host's own configuration: host.json (as the Functions host reads it) and the local function keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DevHostSettings(BaseSettings):
    """Settings only the local dev host reads; in Azure the platform manages keys itself."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    function_keys: str | None = Field(default=None, validation_alias=AliasChoices("FUNCTION_KEYS", "function_keys"))


def read_host_json(root: Path) -> dict[str, Any]:
    path = root / "host.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def route_prefix(host_json: dict[str, Any]) -> str:
    http = host_json.get("extensions", {}).get("http", {})
    prefix = http.get("routePrefix", "api")
    return str(prefix) if prefix is not None else "api"
