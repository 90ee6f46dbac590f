"""Bearer tokens for the two apps: azure-identity in Azure, a static token against the local simulators."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from azure.core.credentials_async import AsyncTokenCredential


class TokenSource(Protocol):
    async def token(self) -> str: ...

    async def close(self) -> None: ...


class StaticToken:
    """`LOCAL_BEARER_TOKEN`: what the local simulators expect."""

    def __init__(self, value: str) -> None:
        self._value = value

    async def token(self) -> str:
        return self._value

    async def close(self) -> None:
        return None


class CredentialToken:
    """A token for `<environment URL>/.default` from an azure-identity credential, cached until 5 minutes before it
    expires (credentials differ in whether they cache; one refresh at a time however many requests wait)."""

    REFRESH_MARGIN_SECONDS = 300

    def __init__(self, credential: AsyncTokenCredential, resource_url: str, *, owned: bool = True) -> None:
        self._credential = credential
        self._owned = owned  # a credential shared with other clients is closed by its owner, not here
        self.scope = resource_url.rstrip("/") + "/.default"
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if self._token is not None and time.time() < self._expires_on - self.REFRESH_MARGIN_SECONDS:
            return self._token
        async with self._lock:
            if self._token is None or time.time() >= self._expires_on - self.REFRESH_MARGIN_SECONDS:
                access = await self._credential.get_token(self.scope)
                self._token, self._expires_on = access.token, float(access.expires_on)
        return self._token

    async def close(self) -> None:
        if self._owned:
            await self._credential.close()


def credential_for(tenant_id: str | None, client_id: str | None, client_secret: str | None) -> AsyncTokenCredential:
    """Client secret when one is configured, else managed identity (user-assigned when a client id is given), else
    whatever `DefaultAzureCredential` finds (a developer's `az login`)."""
    from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

    if tenant_id and client_id and client_secret:
        return ClientSecretCredential(tenant_id, client_id, client_secret)
    return DefaultAzureCredential(managed_identity_client_id=client_id)
