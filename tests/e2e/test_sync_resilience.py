"""Sync runs beside live traffic and through failures, end to end: live edits during a run are not lost; with 10 %
of notifications lost, one reconciliation makes both apps agree and records each repaired row as drift; the dev
host killed mid-run and started again resumes the run, with no duplicate row and the same final state. Steps here
last a fraction of a second (SYNC_STEP_SECONDS=0.3, 100 rows a chunk, up to 3 chunks in flight), so every run is
many queued steps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from local.connect import connect_apps
from local.processes import ROOT, Service, free_port, python_module, start
from local.servicebus.config import DEFAULT_CONFIG
from tests import stack
from tests.e2e.sync_stack import KEYS, SyncStack, dataverse_account, eventually, fno_customer

CUSTOMERS = 1500


@dataclass
class Stack:
    bridge: SyncStack
    env: dict[str, str]
    port: int
    host: Service | None = None

    def start_host(self) -> None:
        self.host = start("dev host", python_module("local.host", "--port", str(self.port), "--root", str(ROOT)),
                          (self.port,), env={"PYTHONPATH": str(ROOT), **self.env},
                          output=stack.log_file("devhost"))  # fmt: skip
        self.host.wait_ready(30)

    def kill_host(self) -> None:
        assert self.host is not None
        self.host.grace_seconds = 0.0  # SIGTERM then SIGKILL at once: a crash, not a shutdown
        self.host.stop()


async def _seed(bridge: SyncStack) -> None:
    """F&O customers that existed before the bridge, written in `$batch`es as a data migration would."""
    async with bridge.fno() as fno:
        for start_at in range(0, CUSTOMERS, 500):
            ops = [fno.create_operation("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": f"RS{i:05d}"},
                                        {"OrganizationName": f"Resilient {i}", "PartyType": "Organization",
                                         "CustomerGroupId": "10", "LanguageId": "en-us"})
                   for i in range(start_at, min(start_at + 500, CUSTOMERS))]  # fmt: skip
            results = await fno.batch(ops, atomic=False)
            assert all(r.ok for r in results)


@pytest.fixture(scope="module")
def live() -> Iterator[Stack]:
    with ExitStack() as exit_stack:
        apps = exit_stack.enter_context(stack.apps(DEFAULT_CONFIG))  # its own Azurite, started with the rest
        connection, dataverse_url, fno_url = apps.servicebus, apps.dataverse_url, apps.fno_url
        env = {"AzureWebJobsStorage": apps.storage.connection_string(), "ServiceBusConnection": connection,
               "DATAVERSE_URL": dataverse_url, "FNO_URL": fno_url, "LOCAL_BEARER_TOKEN": stack.SIM_TOKEN,
               "FUNCTION_KEYS": json.dumps(KEYS), "CONNECTOR_RETRY_ATTEMPTS": "3", "CONNECTOR_RETRY_SECONDS": "10",
               "SYNC_CHUNK_ROWS": "100", "SYNC_STEP_SECONDS": "0.3"}  # fmt: skip
        port = free_port()
        s = Stack(SyncStack(f"http://127.0.0.1:{port}", dataverse_url, fno_url, connection), env, port)
        s.start_host()
        exit_stack.callback(lambda: s.host.stop() if s.host else None)
        asyncio.run(_seed(s.bridge))
        asyncio.run(connect_apps(s.bridge.host, dataverse_url, fno_url, stack.SIM_TOKEN, KEYS))
        yield s


async def api(s: SyncStack, method: str, path: str, body: Any = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        headers = {"x-functions-key": KEYS["master"]}
        return await http.request(method, f"{s.host}/api/{path}", json=body, headers=headers)


async def report(s: SyncStack, run_id: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = (await api(s, "GET", f"sync/{run_id}")).json()
    except httpx.HTTPError:
        return {"state": "host down", "progress": {}}
    return result


async def start_run(s: SyncStack, mode: str = "sync") -> str:
    answer = await api(s, "POST", "maps/customers/sync", {"mode": mode})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


async def finished(s: SyncStack, run_id: str, seconds: float = 90) -> dict[str, Any]:
    result = await eventually(lambda: report(s, run_id), lambda r: r["state"] in ("done", "failed"), seconds)
    assert result["state"] == "done", result
    return result


async def quiet(s: SyncStack, seconds: float = 3.0) -> None:
    """Until neither app has answered a request for `seconds`: live apply has worked off its backlog (on a loaded
    machine it lags the webhooks by several seconds; a fixed wait let it converge rows after the test looked)."""
    counts, since = None, asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - since < seconds:
        now = [(await s.stats(app))["requests"] for app in ("fno", "dataverse")]
        if now != counts:
            counts, since = now, asyncio.get_running_loop().time()
        await asyncio.sleep(0.25)


async def both_names(s: SyncStack) -> tuple[dict[str, str], dict[str, str]]:
    """(F&O's names, Dataverse's names) of the RS customers, by account number."""
    async with httpx.AsyncClient(timeout=30) as http:
        customers = (await http.get(f"{s.fno_url}/_admin/tables/CustomersV3")).json()["value"]
    fno = {c["CustomerAccount"]: c.get("OrganizationName") for c in customers if c["CustomerAccount"].startswith("RS")}
    dataverse = {a["accountnumber"]: a.get("name") for a in await accounts(s) if a["accountnumber"].startswith("RS")}
    return fno, dataverse


async def accounts(s: SyncStack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        rows: list[dict[str, Any]] = (await http.get(f"{s.dataverse_url}/_admin/tables/accounts")).json()["value"]
        return rows


async def test_the_host_killed_mid_run_resumes_with_no_duplicates(live: Stack) -> None:
    s = live.bridge
    run_id = await start_run(s)
    await eventually(lambda: report(s, run_id),
                     lambda r: r["progress"].get("customers", {}).get("processed", 0) >= 500, 60)  # fmt: skip
    live.kill_host()
    live.start_host()  # the step's lock is lost with its link: the broker hands the step to the new host
    result = await finished(s, run_id)
    assert result["progress"]["customers"]["processed"] == result["progress"]["customers"]["planned"]
    assert result["steps"] >= 2  # steps of a fraction of a second each, every one continuing from the last one's cursor
    numbers = [a["accountnumber"] for a in await accounts(s) if str(a.get("accountnumber", "")).startswith("RS")]
    assert len(numbers) == len(set(numbers)) == CUSTOMERS
    again = await finished(s, await start_run(s))
    assert again["progress"]["customers"]["dataverse"]["created"] == 0
    assert again["progress"]["customers"]["dataverse"]["updated"] == 0


async def _rename(s: SyncStack, numbers: list[int], side: str, name: str) -> None:
    if side == "fno":
        async with s.fno() as fno:
            ops = [fno.update_operation("CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": f"RS{i:05d}"},
                                        {"OrganizationName": f"{name} {i}"}) for i in numbers]  # fmt: skip
            assert all(r.ok for r in await fno.batch(ops, atomic=False))
        return
    for i in numbers:
        account = await dataverse_account(s, "USMF", f"RS{i:05d}")
        assert account is not None
        async with s.dataverse() as dv:
            await dv.write("accounts", str(account["accountid"]), {"name": f"{name} {i}"}, if_match="*")


async def test_live_edits_during_a_run_are_not_lost(live: Stack) -> None:
    s = live.bridge
    run_id = await start_run(s)
    await _rename(s, list(range(0, 40)), "fno", "Live F&O")
    await _rename(s, list(range(1000, 1010)), "dataverse", "Live Dataverse")
    await finished(s, run_id)
    await s.settle(3)
    names = await eventually(lambda: both_names(s), lambda n: all(
        n[0].get(f"RS{i:05d}") == n[1].get(f"RS{i:05d}") for i in [*range(40), *range(1000, 1010)]))  # fmt: skip
    fno_names, dataverse_names = names
    assert all(dataverse_names[f"RS{i:05d}"] == f"Live F&O {i}" for i in range(40))
    assert all(fno_names[f"RS{i:05d}"] == f"Live Dataverse {i}" for i in range(1000, 1010))


async def test_one_reconciliation_repairs_what_lost_notifications_left_apart(live: Stack) -> None:
    s = live.bridge
    before = {app: (await s.stats(app))["webhooks"]["dropped"] for app in ("fno", "dataverse")}
    for app in ("fno", "dataverse"):
        await s.delivery(app, drop_share=0.1)
    await _rename(s, list(range(100, 300)), "fno", "Drifted F&O")
    await _rename(s, list(range(300, 340)), "dataverse", "Drifted Dataverse")
    await s.settle(3)
    for app in ("fno", "dataverse"):
        await s.delivery(app)
    dropped = {app: (await s.stats(app))["webhooks"]["dropped"] - before[app] for app in ("fno", "dataverse")}
    assert dropped["fno"] > 0 and dropped["dataverse"] > 0
    await quiet(s)
    fno_names, dataverse_names = await both_names(s)
    apart = {n: ("dataverse" if fno_names[n].startswith("Drifted F&O") else "fno")
             for n in fno_names if fno_names[n] != dataverse_names.get(n)}  # fmt: skip
    assert apart  # lost notifications left rows apart (each lost echo of the bridge's own writes changes nothing)
    result = await finished(s, await start_run(s, "reconcile"))
    customers = result["progress"]["customers"]
    behind = list(apart.values())
    assert customers["dataverse"]["updated"] == behind.count("dataverse")
    assert customers["fno"]["updated"] == behind.count("fno")
    drift = (await api(s, "GET", "drift?map=customers")).json()["drift"]
    assert {d["key"]["CustomerAccount"]: d["behind"] for d in drift} == apart
    assert all(d["run_id"] == result["run_id"] and d["values"] for d in drift)
    fno_names, dataverse_names = await both_names(s)
    assert fno_names == dataverse_names
    for i in range(100, 300, 37):
        assert (await dataverse_account(s, "USMF", f"RS{i:05d}") or {}).get("name") == f"Drifted F&O {i}"
    for i in range(300, 340, 9):
        assert (await fno_customer(s, "usmf", f"RS{i:05d}") or {}).get("OrganizationName") == f"Drifted Dataverse {i}"
