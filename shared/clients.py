"""The process's Azure SDK clients (Table Storage, Service Bus): each built on first use, all closed together.

The Azure SDK advises one client per service per process; async clients bind to the event loop they first run on,
which in the Functions Python worker (and our dev host) is the one loop all async functions share. The composition
root (`shared.bridge`) owns the one `Clients` and the one credential they share.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from functools import cache

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableServiceClient
from azure.servicebus.aio import ServiceBusClient

from shared.settings import ConfigurationError, Settings


class Clients:
    def __init__(self, settings: Settings, credential: Callable[[], AsyncTokenCredential]) -> None:
        self._settings = settings
        self._credential = credential
        self._tables: TableServiceClient | None = None
        self._servicebus: ServiceBusClient | None = None

    @property
    def tables(self) -> TableServiceClient:
        if self._tables is None:
            self._tables = _table_service(self._settings, self._credential)
        return self._tables

    @property
    def servicebus(self) -> ServiceBusClient:
        if self._servicebus is None:
            self._servicebus = _servicebus(self._settings, self._credential)
        return self._servicebus

    async def close(self) -> None:
        if self._tables is not None:
            await self._tables.close()
            self._tables = None
        if self._servicebus is not None:
            await self._servicebus.close()
            self._servicebus = None


def _proxy_configured() -> bool:
    return any(os.environ.get(n) for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY") for n in (v, v.lower()))


def _table_service(settings: Settings, credential: Callable[[], AsyncTokenCredential]) -> TableServiceClient:
    # With `use_env_settings` (the SDK's default) aiohttp looks the proxy up in the environment for every request,
    # in a thread (`asyncio.to_thread`): a thread hop per ledger read or write. Only asked for when a proxy is set.
    proxy = _proxy_configured()
    if settings.storage_connection_string is not None:
        return TableServiceClient.from_connection_string(
            settings.storage_connection_string.get_secret_value(), use_env_settings=proxy
        )
    endpoint = settings.table_endpoint
    if endpoint is None:
        raise ConfigurationError(
            "no Table Storage configured: set AzureWebJobsStorage or AzureWebJobsStorage__accountName"
        )
    return TableServiceClient(endpoint=endpoint, credential=credential(), use_env_settings=proxy)


@cache
def amqp_tls() -> ssl.SSLContext:
    """One TLS context for every AMQP connection: the SDK otherwise loads the system CA store (~50 ms of CPU) each
    time it opens a sender or receiver, even for the emulator's plain connection."""
    return ssl.create_default_context()


def _servicebus(settings: Settings, credential: Callable[[], AsyncTokenCredential]) -> ServiceBusClient:
    if settings.servicebus_connection_string is not None:
        return ServiceBusClient.from_connection_string(
            settings.servicebus_connection_string.get_secret_value(), ssl_context=amqp_tls()
        )
    if settings.servicebus_namespace is None:
        raise ConfigurationError(
            "no Service Bus configured: set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace"
        )
    return ServiceBusClient(settings.servicebus_namespace, credential=credential(), ssl_context=amqp_tls())
