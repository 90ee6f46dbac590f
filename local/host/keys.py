"""Function keys as the Functions host checks them: `x-functions-key` header or `code` query parameter.

`FUNCTION_KEYS` is a JSON object: a function's name → its own key; `"default"` → a host key valid for every
function; `"master"` → the master key, valid everywhere and the only key that opens ADMIN functions.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from local.host.functions import AuthLevel


class FunctionKeysError(ValueError):
    pass


def parse_function_keys(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        keys = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FunctionKeysError(f"FUNCTION_KEYS is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in keys.items()):
        raise FunctionKeysError(
            'FUNCTION_KEYS must be a JSON object of non-empty strings: {"<function>|default|master": "<key>"}'
        )
    return keys


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    return headers.get("x-functions-key") or query.get("code") or None


def is_authorized(level: AuthLevel, function_name: str, key: str | None, keys: Mapping[str, str]) -> bool:
    if level == "anonymous":
        return True
    if not key:
        return False
    accepted = [keys.get("master")]
    if level == "function":
        accepted += [keys.get(function_name), keys.get("default")]
    # compare_digest: no timing hints about how much of a key was right
    return any(k is not None and hmac.compare_digest(k.encode(), key.encode()) for k in accepted)
