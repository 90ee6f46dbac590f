"""Builds the Dataverse and F&O clients from the app settings (the composition root, `shared.bridge`, holds them)."""

from __future__ import annotations

from collections.abc import Callable

from azure.core.credentials_async import AsyncTokenCredential

from shared.connectors.auth import CredentialToken, StaticToken, TokenSource, credential_for
from shared.connectors.dataverse import DataverseClient
from shared.connectors.fno import FnoClient
from shared.connectors.http import ODataTransport, RetryPolicy
from shared.settings import ConfigurationError, Settings

SharedCredential = Callable[[], AsyncTokenCredential]  # the process's one credential, built when first needed


def _tokens(
    settings: Settings, url: str, client_id: str | None, secret: str | None, shared: SharedCredential | None
) -> TokenSource:
    if settings.local_bearer_token is not None:
        return StaticToken(settings.local_bearer_token.get_secret_value())
    if shared is not None and client_id is None:
        return CredentialToken(shared(), url, owned=False)
    # An app registration of its own (a secret, or another managed identity) is another identity: its own credential.
    return CredentialToken(credential_for(settings.azure_tenant_id, client_id, secret), url)


def _transport(settings: Settings, url: str, api_root: str, tokens: TokenSource) -> ODataTransport:
    policy = RetryPolicy(attempts=settings.connector_retry_attempts, total_seconds=settings.connector_retry_seconds)
    return ODataTransport(
        url.rstrip("/") + api_root, tokens, max_in_flight=settings.connector_max_in_flight, retry=policy
    )


def dataverse_client(settings: Settings, credential: SharedCredential | None = None) -> DataverseClient:
    if not settings.dataverse_url:
        raise ConfigurationError("DATAVERSE_URL is not set")
    secret = settings.dataverse_client_secret.get_secret_value() if settings.dataverse_client_secret else None
    tokens = _tokens(settings, settings.dataverse_url, settings.dataverse_client_id, secret, credential)
    return DataverseClient(_transport(settings, settings.dataverse_url, "/api/data/v9.2/", tokens))


def fno_client(settings: Settings, credential: SharedCredential | None = None) -> FnoClient:
    if not settings.fno_url:
        raise ConfigurationError("FNO_URL is not set")
    secret = settings.fno_client_secret.get_secret_value() if settings.fno_client_secret else None
    tokens = _tokens(settings, settings.fno_url, settings.fno_client_id, secret, credential)
    return FnoClient(_transport(settings, settings.fno_url, "/data/", tokens))


class Connectors:
    """Both apps' clients, each built on first use (a process serving only webhooks needs neither URL)."""

    def __init__(self, settings: Settings, credential: SharedCredential | None = None) -> None:
        self._settings = settings
        self._credential = credential
        self._dataverse: DataverseClient | None = None
        self._fno: FnoClient | None = None

    @property
    def dataverse(self) -> DataverseClient:
        if self._dataverse is None:
            self._dataverse = dataverse_client(self._settings, self._credential)
        return self._dataverse

    @property
    def fno(self) -> FnoClient:
        if self._fno is None:
            self._fno = fno_client(self._settings, self._credential)
        return self._fno

    async def close(self) -> None:
        for client in (self._dataverse, self._fno):
            if client is not None:
                await client.close()
        self._dataverse = self._fno = None
