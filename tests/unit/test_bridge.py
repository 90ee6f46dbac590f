"""The composition root owns the console's parts: a bridge closed and built again gets a store over its new
clients, never one left from the closed bridge (they were module-level caches once, keeping closed clients)."""

from __future__ import annotations

import asyncio

import pytest

from shared import bridge as root
from shared.bridge import Bridge
from shared.settings import Settings

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IF"
    "suFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:1/devstoreaccount1;"
)


def test_a_bridge_built_again_gets_new_console_parts() -> None:
    async def scenario() -> None:
        root._bridge = Bridge(Settings(storage_connection_string=AZURITE))
        first = root.bridge()
        store, observer = first.ops.store, first.ops.observer
        assert first.ops.effects.store is store and first.ops.effects.waiting is first.ops.waiting
        from shared.ops.observer import get_observer
        from shared.ops.wiring import get_store

        assert get_store() is store and get_observer() is observer
        await root.close_bridge()
        assert root.current_bridge() is None
        root._bridge = Bridge(Settings(storage_connection_string=AZURITE))
        try:
            assert get_store() is not store and get_observer() is not observer
            assert get_store() is root.bridge().ops.store
        finally:
            await root.close_bridge()

    asyncio.run(scenario())


def test_the_publisher_watches_the_waiting_list_of_its_own_bridge() -> None:
    b = Bridge(Settings(storage_connection_string=AZURITE))
    from shared.ops.wiring import queue_watcher

    assert queue_watcher(b) is b.ops.waiting
    # no Table Storage: nowhere to keep the list
    assert queue_watcher(Bridge(Settings(storage_connection_string=None))) is None


def test_the_console_parts_of_a_bridge_act_through_that_bridge() -> None:
    """A bridge built directly (a test, a benchmark) must not reach for the process's global one."""
    from datetime import UTC, datetime

    from shared.events.model import ChangeEvent, Operation, Side

    root._bridge = None
    b = Bridge(Settings(storage_connection_string=AZURITE))
    event = ChangeEvent(event_id="fno-1", source=Side.FNO, entity="CustomersV3", operation=Operation.UPDATE,
                        row_id="1", occurred_at=datetime.now(UTC))  # fmt: skip
    assert "customers" in b.ops.waiting._maps_for(event)
    assert b.ops.effects.pause.__self__ is b.ops  # type: ignore[attr-defined]
    assert root.current_bridge() is None


def test_table_requests_look_for_a_proxy_only_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp with `trust_env` looks the proxy up in a thread on every request: off unless a proxy is configured."""
    from shared.clients import _table_service

    def trusts_env() -> bool:
        tables = _table_service(Settings(storage_connection_string=AZURITE), lambda: None)  # type: ignore[arg-type,return-value]
        transport = tables._client._client._pipeline._transport  # the SDK's AioHttpTransport
        return bool(transport._use_env_settings)

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert not trusts_env()
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.contoso.com:8080")
    assert trusts_env()
