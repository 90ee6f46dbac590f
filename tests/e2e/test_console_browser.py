"""The console in a real browser (Debian's headless Chromium driven by Playwright) against the running local stack:
pause a map and see its held changes grow, resume and see them applied, replay an error, resolve a conflict. A
screenshot of the page is saved with the test logs."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests import stack
from tests.e2e.console_stack import Receiver, api, console_stack, set_column_length
from tests.e2e.sync_stack import KEYS, SyncStack, dataverse_account, eventually, fno_customer, synced_customer, unique

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
PHONE = "+1 555 " + "0" * 60
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Debian's chromium is not installed (make test)")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SyncStack, Receiver]]:
    # Its own Azurite: the ledger, errors and conflicts these tests leave must not reach the session's other stacks
    # (whose simulators give the same rows other ids), nor theirs reach these.
    with stack.azurite() as own, console_stack(own, tmp_path_factory.mktemp("browser-maps")) as both:
        yield both


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _create(bridge: SyncStack, number: str, **values: Any) -> None:
    async with bridge.fno() as fno:
        await fno.create(
            "CustomersV3",
            {"dataAreaId": "usmf", "CustomerAccount": number},
            {"OrganizationName": "Browser", "PartyType": "Organization", **values},
        )


async def test_an_operator_runs_the_bridge_from_the_console(
    console: tuple[SyncStack, Receiver], browser: Browser
) -> None:
    bridge, _ = console
    page: Page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)  # a loaded machine: assertions wait as long as actions
    await page.goto(f"{bridge.host}/api/console?code={KEYS['master']}")
    customers = page.locator("#maps tr[data-map=customers]")
    await expect(customers.locator(".state")).to_contain_text("running")

    # Pause: the map's changes are held, and the page shows them grow.
    await customers.locator("button.pause").click()
    await expect(customers.locator(".state")).to_contain_text("paused")
    numbers = [unique("BP") for _ in range(3)]
    for number in numbers[:1]:
        await _create(bridge, number)
    await expect(customers.locator(".held")).to_have_text("1")
    for number in numbers[1:]:
        await _create(bridge, number)
    await expect(customers.locator(".held")).to_have_text("3")

    # Resume: held changes are applied; the page shows none held and them applied.
    await customers.locator("button.resume").click()
    await expect(customers.locator(".state")).to_contain_text("running")
    await expect(customers.locator(".held")).to_have_text("0")
    for number in numbers:
        await eventually(lambda n=number: dataverse_account(bridge, "USMF", n), lambda a: a is not None)
    await expect(customers.locator(".applied-hour")).not_to_have_text("0")

    # Replay: a change refused by Dataverse, the column widened, replayed from the page.
    await set_column_length(bridge, "telephone1", 50)
    broken = unique("BE")
    await _create(bridge, broken, PrimaryContactPhone=PHONE)
    error_row = page.locator("#errors tbody tr", has_text=broken)
    await expect(error_row).to_be_visible()
    await expect(error_row.locator(".status")).to_have_text("open")
    await expect(customers.locator(".open-errors")).not_to_have_text("0")
    await set_column_length(bridge, "telephone1", 100)
    await page.select_option("#error-status", "")  # every status, to watch it resolve
    await error_row.locator("button.replay").click()
    await expect(error_row.locator(".status")).to_contain_text("resolved")
    account = await eventually(lambda: dataverse_account(bridge, "USMF", broken), lambda a: a is not None)
    assert account is not None and account["telephone1"] == PHONE

    # A conflict parked by the manual policy, resolved from the page with a typed value.
    number, row = await synced_customer(bridge, "BC")
    await api(bridge, "POST", "maps/customers/pause")
    async with bridge.fno() as fno:
        await fno.update(
            "CustomersV3", {"dataAreaId": "usmf", "CustomerAccount": number}, {"OrganizationName": "F&O side"}
        )
    await bridge.settle(1.0)
    async with bridge.dataverse() as dataverse:
        await dataverse.write("accounts", str(row["accountid"]), {"name": "Dataverse side"})
    await bridge.settle(1.0)
    await api(bridge, "POST", "maps/customers/resume")
    conflicts = page.locator("#conflicts tbody tr[data-conflict]", has_text=number)
    await expect(conflicts).to_have_count(2)
    await expect(customers.locator(".open-conflicts")).to_have_text("2")
    await page.screenshot(path=str(stack.LOG_DIR / f"console-{os.getpid()}.png"), full_page=True)
    for conflict_id in [await r.get_attribute("data-conflict") for r in await conflicts.all()]:
        one = page.locator(f"#conflicts tr[data-conflict='{conflict_id}']")
        await one.locator("input[type=radio][value=value]").check()
        await one.locator("input.typed").fill("Agreed name")
        await one.locator("button.resolve").click()
        await expect(one).to_have_count(0)
    await expect(conflicts).to_have_count(0)
    await expect(page.locator("#banner")).to_be_hidden()
    customer = await eventually(
        lambda: fno_customer(bridge, "usmf", number), lambda c: bool(c and c["OrganizationName"] == "Agreed name")
    )
    account = await dataverse_account(bridge, "USMF", number)
    assert customer is not None and account is not None and account["name"] == "Agreed name"
    await expect(customers.locator(".open-conflicts")).to_have_text("0")
    await page.screenshot(path=str(stack.LOG_DIR / f"console-{os.getpid()}-after.png"))
    await page.close()
