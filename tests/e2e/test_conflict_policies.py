"""Concurrent edits to one row on both sides, for each conflict policy, on the whole local stack: the documented
winner on both sides and a conflicts record. (The `merge` policy — the customers map's own — is in test_apply.)

Each policy runs the bridge with a copy of the maps whose customers map uses it. The map is paused while a person
edits the same customer in both apps, so both changes are held and meet for real when it resumes."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.sync_stack import SyncStack, dataverse_account, eventually, fno_customer, sync_stack, synced_customer

ROOT = Path(__file__).resolve().parents[2]
POLICIES = {
    "master": "{policy: master, master: dataverse}",
    "last_writer_wins": "{policy: last_writer_wins, master: fno}",
    "manual": "{policy: manual, master: fno}",
}


@pytest.fixture(scope="module", params=list(POLICIES))
def policy_bridge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, SyncStack]]:
    policy = str(request.param)
    maps = tmp_path_factory.mktemp(f"maps-{policy}")
    for source in (ROOT / "maps" / "tables").glob("*.yaml"):
        shutil.copy(source, maps / source.name)
    customers = maps / "customers.yaml"
    text, count = re.subn(r"(?m)^conflict: .*$", f"conflict: {POLICIES[policy]}", customers.read_text())
    assert count == 1
    customers.write_text(text)
    with sync_stack(MAPS_DIR=str(maps)) as s:  # an Azurite of its own: each policy's conflicts apart
        yield policy, s


async def _edit_both(bridge: SyncStack, number: str, account: dict[str, Any]) -> None:
    """F&O first, then — once its notification is held — Dataverse: Dataverse is the later writer."""
    await bridge.admin("POST", "maps/customers/pause")
    try:
        async with bridge.fno() as fno:
            await fno.update(
                "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number}, {"OrganizationName": "F&O name"}
            )
        await bridge.settle(1.0)
        async with bridge.dataverse() as dataverse:
            await dataverse.write("accounts", str(account["accountid"]), {"name": "DV name"})
        await bridge.settle(1.0)
    finally:
        released = await bridge.admin("POST", "maps/customers/resume")
    assert released["released"] >= 2


async def _conflict(bridge: SyncStack, number: str) -> dict[str, Any]:
    async def mine() -> list[dict[str, Any]]:
        found = (await bridge.admin("GET", "conflicts?map=customers"))["conflicts"]
        return [c for c in found if c["key"].get("CustomerAccount") == number]

    return (await eventually(mine, bool, seconds=30))[0]


async def test_concurrent_edits_settle_by_the_policy(policy_bridge: tuple[str, SyncStack]) -> None:
    policy, bridge = policy_bridge
    number, account = await synced_customer(bridge, policy[:2].upper())
    await _edit_both(bridge, number, account)
    conflict = await _conflict(bridge, number)
    assert conflict["policy"] == policy
    (field,) = conflict["fields"].values()
    assert {field["source"], field["target"]} == {"F&O name", "DV name"} and field["base"] == "Original"

    if policy == "manual":  # nothing is overwritten; the conflict waits for a person
        assert conflict["winner"] == "none" and conflict["status"] == "open"
        await bridge.settle(2.0)
        assert (await fno_customer(bridge, "usmf", number) or {}).get("OrganizationName") == "F&O name"
        assert (await dataverse_account(bridge, "USMF", number) or {}).get("name") == "DV name"
        return

    # master: Dataverse is the master; last_writer_wins: Dataverse wrote last (the map's master is F&O, so a
    # Dataverse win shows the timestamps decided).
    assert conflict["winner"] == "dataverse" and conflict["status"] == "resolved"
    customer = await eventually(
        lambda: fno_customer(bridge, "usmf", number), lambda c: bool(c and c.get("OrganizationName") == "DV name"), 30
    )
    assert customer is not None
    await bridge.settle(2.0)
    assert (await dataverse_account(bridge, "USMF", number) or {}).get("name") == "DV name"
