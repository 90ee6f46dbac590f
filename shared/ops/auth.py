"""Who is acting: locally the master key (the dev host checks it), in Azure App Service Authentication (Entra ID)
in front of the app, which signs the operator in and passes `X-MS-CLIENT-PRINCIPAL` (base64 JSON claims) and
`X-MS-CLIENT-PRINCIPAL-NAME` — headers it strips from any incoming request, so they cannot be forged from outside
(Microsoft Learn, "Work with user identities in Azure App Service authentication"). Only members of the app role
(`OPERATOR_ROLE`, `Bridge.Operator`) may read or act."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass

ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")


@dataclass(frozen=True)
class Operator:
    name: str
    allowed: bool
    why: str = ""


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def principal_roles(encoded: str) -> set[str]:
    try:
        principal = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError):
        return set()
    claims = principal.get("claims") if isinstance(principal, dict) else None
    if not isinstance(claims, list):
        return set()
    return {str(c.get("val")) for c in claims if isinstance(c, dict) and c.get("typ") in ROLE_CLAIMS}


def operator(headers: Mapping[str, str], mode: str, role: str) -> Operator:
    """The acting operator. `key` mode: the host has already checked the master key (a request without it never
    reaches us); `entra` mode: the signed-in principal must hold the role."""
    h = _lower(headers)
    name = h.get("x-ms-client-principal-name", "")
    if mode == "key":
        return Operator(name or "master key", True)
    encoded = h.get("x-ms-client-principal", "")
    if not encoded or not name:
        return Operator("", False, "sign in: App Service Authentication passed no principal")
    if role not in principal_roles(encoded):
        return Operator(name, False, f"{name} is not a member of the app role {role}")
    return Operator(name, True)
