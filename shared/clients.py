"""The process's shared Azure clients: created once from settings on first use, closed on shutdown.

The Azure SDK advises one client per service per process; async clients bind to the event loop they first run on,
which in the Functions Python worker (and our dev host) is the one loop all async functions share.
"""

from __future__ import annotations

import ssl
from functools import cache

from azure.data.tables.aio import TableServiceClient
from azure.servicebus.aio import ServiceBusClient

from shared.settings import ConfigurationError, Settings, get_settings


class Clients:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._tables: TableServiceClient | None = None
        self._servicebus: ServiceBusClient | None = None

    @property
    def tables(self) -> TableServiceClient:
        if self._tables is None:
            self._tables = _table_service(self._settings)
        return self._tables

    @property
    def servicebus(self) -> ServiceBusClient:
        if self._servicebus is None:
            self._servicebus = _servicebus(self._settings)
        return self._servicebus

    async def close(self) -> None:
        if self._tables is not None:
            await self._tables.close()
            self._tables = None
        if self._servicebus is not None:
            await self._servicebus.close()
            self._servicebus = None


def _table_service(settings: Settings) -> TableServiceClient:
    if settings.storage_connection_string is not None:
        return TableServiceClient.from_connection_string(settings.storage_connection_string.get_secret_value())
    endpoint = settings.table_endpoint
    if endpoint is None:
        raise ConfigurationError(
            "no Table Storage configured: set AzureWebJobsStorage or AzureWebJobsStorage__accountName"
        )
    from azure.identity.aio import DefaultAzureCredential

    return TableServiceClient(endpoint=endpoint, credential=DefaultAzureCredential())


@cache
def amqp_tls() -> ssl.SSLContext:
    """One TLS context for every AMQP connection: the SDK otherwise loads the system CA store (~50 ms of CPU) each
    time it opens a sender or receiver, even for the emulator's plain connection."""
    return ssl.create_default_context()


def _servicebus(settings: Settings) -> ServiceBusClient:
    if settings.servicebus_connection_string is not None:
        return ServiceBusClient.from_connection_string(
            settings.servicebus_connection_string.get_secret_value(), ssl_context=amqp_tls()
        )
    if settings.servicebus_namespace is None:
        raise ConfigurationError(
            "no Service Bus configured: set ServiceBusConnection or ServiceBusConnection__fullyQualifiedNamespace"
        )
    from azure.identity.aio import DefaultAzureCredential

    return ServiceBusClient(settings.servicebus_namespace, credential=DefaultAzureCredential(), ssl_context=amqp_tls())


_clients: Clients | None = None


def get_clients() -> Clients:
    global _clients
    if _clients is None:
        _clients = Clients(get_settings())
    return _clients


async def close_clients() -> None:
    global _clients
    if _clients is not None:
        await _clients.close()
        _clients = None
