"""The dev host's stop: it awaits the app's `shutdown()` hook, so the app's clients close instead of being left to
the garbage collector (which aiohttp reports as `Unclosed client session` / `Unclosed connector`)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from local.processes import ROOT, AzuritePorts, free_port, python_module, start
from local.servicebus.config import DEFAULT_CONFIG
from tests import stack


def _serve_then_stop(env: dict[str, str], log: Path, app: str = "function_app:app") -> str:
    port = free_port()
    with log.open("wb") as output:
        host = start(
            "dev host",
            python_module("local.host", "--app", app, "--port", str(port)),
            (port,),
            env={"PYTHONPATH": str(ROOT), **env},
            output=output,
        )
    try:
        host.wait_ready(30)
        for path in ("health", "conflicts", "errors"):  # Table Storage and Service Bus clients, all in use
            r = httpx.get(f"http://127.0.0.1:{port}/api/{path}", headers={"x-functions-key": "k"}, timeout=15)
            assert r.status_code == 200, r.text
        host.process.send_signal(signal.SIGTERM)
        assert host.process.wait(10) == 0
    finally:
        host.stop()
    return log.read_text(errors="replace")


def test_a_stop_closes_the_apps_clients(azurite: AzuritePorts, tmp_path: Path) -> None:
    with stack.broker(DEFAULT_CONFIG) as servicebus:
        env = {
            "AzureWebJobsStorage": azurite.connection_string(),
            "ServiceBusConnection": servicebus,
            "FUNCTION_KEYS": '{"master": "k"}',
        }
        out = _serve_then_stop(env, tmp_path / "devhost.log")
    assert "dev host stopped" in out
    assert "Unclosed" not in out, out
    assert "shutdown hook failed" not in out
