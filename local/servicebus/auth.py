"""Shared access signatures, checked as Service Bus checks them against the namespace's key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse


class SasValidator:
    """Checks `SharedAccessSignature sr=…&sig=…&se=…&skn=…` against the namespace key, as Service Bus does."""

    def __init__(self, key_name: str | None, key: str | None) -> None:
        self.key_name, self.key = key_name, key

    def validate(self, token: str, now: float) -> str | None:
        """None when valid, else the reason."""
        if self.key is None:
            return None
        if not token.startswith("SharedAccessSignature "):
            return "not a SharedAccessSignature token"
        # Keep each value as sent: the signature covers `sr` exactly as it stands in the token, URL-encoded (as the
        # SDK's own tokens have it) or plain (as its authenticate_using_azure_sas_credential sample signs it).
        raw = dict(part.partition("=")[::2] for part in token[len("SharedAccessSignature ") :].split("&"))
        try:
            resource, expiry = raw["sr"], int(raw["se"])
            signature = urllib.parse.unquote(raw["sig"])
        except (KeyError, ValueError):
            return "the token lacks sr, sig or se"
        key_name = urllib.parse.unquote(raw.get("skn", ""))
        if self.key_name and key_name != self.key_name:
            return f"unknown key name {key_name!r}"
        if expiry < now:
            return "the token has expired"
        to_sign = f"{resource}\n{expiry}".encode()
        expected = base64.b64encode(hmac.new(self.key.encode(), to_sign, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            return "the signature does not match the key"
        return None
