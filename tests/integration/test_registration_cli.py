"""`python -m shared.registration` against the Dataverse simulator, as a user runs it: the plan, an idempotent
register, remove; and the F&O instructions."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from shared.maps.loader import load_maps
from shared.maps.model import Side
from tests import stack

ROOT = Path(__file__).resolve().parents[2]


def _cli(dataverse_sim: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATAVERSE_", "AZURE_"))}
    env |= {"DATAVERSE_URL": dataverse_sim, "LOCAL_BEARER_TOKEN": stack.SIM_TOKEN}
    return subprocess.run(
        [sys.executable, "-m", "shared.registration", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def _rows(dataverse_sim: str, entity_set: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = httpx.get(f"{dataverse_sim}/_admin/tables/{entity_set}").json()["value"]
    return [r for r in rows if str(r.get("name", "")).startswith(name)]


def test_dry_run_register_twice_and_remove(dataverse_sim: str) -> None:
    name = f"bridge-{uuid.uuid4().hex[:6]}"
    url = "https://bridge.example/api/webhooks/dataverse"
    plan = _cli(dataverse_sim, "dataverse", "--webhook-url", url, "--key", "k1", "--name", name, "--dry-run")
    assert plan.returncode == 0, plan.stderr
    assert f"service endpoint {name!r}" in plan.stdout and "Update of account" in plan.stdout
    assert _rows(dataverse_sim, "serviceendpoints", name) == []  # a dry run changes nothing

    for key in ("k1", "k2"):  # the second run updates in place (a rotated key), it does not duplicate
        run = _cli(dataverse_sim, "dataverse", "--webhook-url", url, "--key", key, "--name", name)
        assert run.returncode == 0, run.stderr
    (endpoint,) = _rows(dataverse_sim, "serviceendpoints", name)
    assert endpoint["url"] == url and endpoint["authtype"] == 4 and "k2" in endpoint["authvalue"]
    steps = _rows(dataverse_sim, "sdkmessageprocessingsteps", name)
    tables = {s["name"].split(" of ")[1] for s in steps}
    assert len(steps) == 3 * len(tables) and "account" in tables
    assert all(s["stage"] == 40 and s["mode"] == 1 for s in steps)  # async post-operation
    update = next(s for s in steps if s["name"] == f"{name}: Update of account")
    reads = set().union(
        *(c.map.readable(Side.DATAVERSE) for c in load_maps().enabled() if c.map.dataverse.table == "account")
    )
    assert set(update["filteringattributes"].split(",")) == reads
    images = _rows(dataverse_sim, "sdkmessageprocessingstepimages", name)
    assert {i["name"] for i in images} >= {
        f"{name}: Update of account PreImage",
        f"{name}: Update of account PostImage",
    }

    removed = _cli(dataverse_sim, "remove", "--name", name)
    assert removed.returncode == 0, removed.stderr
    for entity_set in ("serviceendpoints", "sdkmessageprocessingsteps", "sdkmessageprocessingstepimages"):
        assert _rows(dataverse_sim, entity_set, name) == [], entity_set


def test_fno_prints_what_to_activate_and_where(dataverse_sim: str) -> None:
    run = _cli(dataverse_sim, "fno", "--webhook-url", "https://bridge.example/api/webhooks/fno?code=x")
    assert run.returncode == 0, run.stderr
    assert "CustomersV3" in run.stdout and "https://bridge.example/api/webhooks/fno?code=x" in run.stdout


def test_a_missing_key_is_a_clear_error(dataverse_sim: str) -> None:
    run = _cli(dataverse_sim, "dataverse", "--webhook-url", "https://bridge.example/x")
    assert run.returncode == 2 and "--key is required" in run.stderr and "Traceback" not in run.stderr
