"""The console in a real browser: the system Chromium driven by Playwright against the real
app served by uvicorn on 127.0.0.1, on a SQLite file seeded through the services.

Runs in the SQLite pass only (the HTTP tests cover both databases). Screenshots of the main
pages are kept in test-artifacts/console/."""

import asyncio
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvicorn

from api.core import migrate
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.main import create_app
from tests.admin import seed
from tests.conftest import IS_POSTGRES, make_settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"

pytestmark = [
    pytest.mark.skipif(IS_POSTGRES, reason="browser tests run in the SQLite pass"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a migrated, seeded SQLite file, served by uvicorn in a thread."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('console')}/console.db"
    settings = make_settings(database_url=url)

    async def build() -> None:
        await asyncio.to_thread(migrate.upgrade_head, url)
        engine = make_engine(url)
        try:
            await run_in_transaction(make_sessionmaker(engine), lambda s: seed.build(s, settings))
        finally:
            await engine.dispose()

    worker = threading.Thread(target=lambda: asyncio.run(build()))
    worker.start()
    worker.join()
    port = _free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page_for(browser, server):  # type: ignore[no-untyped-def]
    """page_for(role) → a page signed in as the seeded staff member of that role."""
    contexts = []
    outside: list[str] = []

    async def make(role: str | None, *, width: int = 1440, height: int = 900):  # type: ignore[no-untyped-def]
        context = await browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": width, "height": height}, locale="zh-CN", base_url=server
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        context.on(
            "request",
            lambda r: outside.append(r.url) if not r.url.startswith((server, "data:")) else None,
        )
        if role is not None:
            email, password = seed.LOGINS[role]
            await page.goto("/admin/login")
            await page.fill("#email", email)
            await page.fill("#password", password)
            await page.click("button[type=submit]")
            await page.wait_for_load_state("networkidle")
        return page

    yield make
    for context in contexts:
        await context.close()
    assert outside == [], "the console fetched something from outside"


async def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_load_state("networkidle")
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def wait_until(page, expression: str, seconds: float = 15) -> None:  # type: ignore[no-untyped-def]
    """Poll a JS expression (page.wait_for_function would need eval, which the CSP forbids)."""
    deadline = time.monotonic() + seconds
    while not await page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        await asyncio.sleep(0.1)


async def charts_drawn(page) -> int:  # type: ignore[no-untyped-def]
    await wait_until(page, "!!window.Chart && Object.keys(window.Chart.instances).length > 0")
    return await page.evaluate("Object.keys(window.Chart.instances).length")


async def test_sign_in_lands_on_the_dashboard_with_charts(page_for):
    page = await page_for(None)
    await page.goto("/admin/campaigns")
    assert "/admin/login" in page.url
    await shot(page, "01-sign-in")
    await page.fill("#email", seed.LOGINS["admin"][0])
    await page.fill("#password", "wrong password")
    await page.click("button[type=submit]")
    assert await page.get_by_text("Incorrect e-mail or password").is_visible()
    await page.fill("#password", seed.LOGINS["admin"][1])
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/admin/campaigns$"))  # back where the sign-in was asked
    await page.goto("/admin/dashboard")
    assert await page.get_by_role("heading", name="Programme dashboard").is_visible()
    assert await charts_drawn(page) == 4
    await shot(page, "02-dashboard")
    await page.set_viewport_size({"width": 820, "height": 1180})  # a tablet held upright
    await page.click("[data-toggle-nav]")
    await page.wait_for_timeout(400)  # the menu slides in
    assert await page.locator("#sidebar").is_visible()
    await shot(page, "02b-dashboard-tablet-menu")
    await page.click("main h1")
    await shot(page, "02c-dashboard-tablet")
    await page.set_viewport_size({"width": 1440, "height": 900})
    await page.goto("/admin/insights/lapsed")
    first = page.locator("tbody tr").first
    await first.locator("select[name=result]").select_option("reached")
    await first.locator("input[name=reason]").fill("回访成功 called, coming Saturday")
    await first.locator("button:has-text('Record')").click()
    await page.wait_for_load_state("networkidle")
    assert await page.get_by_text("Outcome recorded.").is_visible()
    assert await page.locator("tbody tr").first.locator(".badge.reached").count() == 1
    await shot(page, "03-lapse-follow-up")


async def test_marketer_builds_and_schedules_a_campaign(page_for):
    page = await page_for("marketer")
    await page.goto("/admin/campaigns")
    await shot(page, "04-campaigns")
    await page.click("text=New campaign")
    size = page.locator("[data-audience-size]")
    await size.wait_for()
    everyone = int(await size.get_attribute("data-audience-size"))
    assert everyone > 0
    await page.fill("input[name=name]", "周末加油双倍积分 Fuel weekend")
    await page.select_option("select[name='audience.store_kind']", "fuel_station")
    await wait_until(
        page, f"document.querySelector('[data-audience-size]').dataset.audienceSize != '{everyone}'"
    )
    fuel = int(await size.get_attribute("data-audience-size"))
    assert 0 < fuel < everyone
    await page.fill("input[name='message.title']", "{name}，周末加油双倍积分")
    await page.fill(
        "textarea[name='message.body']", "You have {points} points. Fill up this weekend."
    )
    assert (
        "王小明，周末加油双倍积分" in await page.locator("[data-notification-title]").inner_text()
    )
    await page.fill("input[name=holdout_percent]", "15")
    await shot(page, "05-campaign-builder")
    await page.click("button:has-text('Save draft')")
    await page.wait_for_url(re.compile(r"/admin/campaigns/\d+$"))
    assert await page.get_by_text("Draft saved").is_visible()
    await page.click("button:has-text('Schedule')")
    await page.wait_for_load_state("networkidle")
    assert await page.locator("h1 .badge").inner_text() == "scheduled"
    await page.goto("/admin/campaigns")
    row = page.locator("tr", has_text="Fuel weekend")
    assert await row.locator(".badge").inner_text() == "scheduled"
    await page.click("tr:has-text('Weekend fresh-food offer') >> text=Report")
    assert await charts_drawn(page) == 2
    await shot(page, "06-campaign-report")


async def test_cashier_records_a_purchase_and_the_balance_changes(page_for):
    page = await page_for("cashier", width=1024, height=1366)
    assert page.url.endswith("/admin/till")
    nav = await page.locator("nav").inner_text()
    assert "Cashier screen" in nav and "Campaigns" not in nav
    await page.goto("/admin/members")  # not for cashiers
    assert await page.get_by_text("Not for your role").is_visible()
    await page.goto("/admin/campaigns")
    assert await page.get_by_text("Not for your role").is_visible()
    await page.goto("/admin/till")
    await page.fill("#scan-code", "13800000000")  # nobody
    await page.click("button:has-text('Find')")
    await page.locator(".alert.error").wait_for()
    member_phone = await _seeded_phone(page)
    await page.fill("#scan-code", member_phone)
    await page.click("button:has-text('Find')")
    balance = page.locator("#member-balance")
    await balance.wait_for()
    before = int((await balance.inner_text()).replace(",", ""))
    await page.fill("input[name='lines-0-category']", "fresh")
    await page.fill("input[name='lines-0-amount']", "128.50")
    await wait_until(page, "document.querySelector('#quote').innerText.includes('earns')")
    assert await page.locator("input[name=total]").input_value() == "128.50"
    await shot(page, "07-till-tablet")
    await page.click("button:has-text('Record purchase')")
    earned = page.locator("[data-points-earned]")
    await earned.wait_for()
    points = int(await earned.get_attribute("data-points-earned"))
    assert points >= 128
    await wait_until(
        page,
        "document.querySelector('#member-balance').innerText.replace(/,/g, '')"
        f" == '{before + points}'",
    )
    await shot(page, "08-till-after-purchase")


async def _seeded_phone(page) -> str:  # type: ignore[no-untyped-def]
    """A phone of a member of the cashier's store, found as a manager would."""
    manager = await page.context.browser.new_context(base_url=page.url.split("/admin")[0])
    other = await manager.new_page()
    email, password = seed.LOGINS["store_manager"]
    await other.goto("/admin/login")
    await other.fill("#email", email)
    await other.fill("#password", password)
    await other.click("button[type=submit]")
    await other.goto("/admin/members")
    phone = await other.locator("tbody tr td.mono").first.inner_text()
    await other.click("tbody tr a >> nth=0")
    await shot(other, "09-member-profile")
    await manager.close()
    return phone


async def test_csv_import_shows_the_bad_row_and_imports_only_the_good_ones(page_for, tmp_path):
    page = await page_for("admin")
    csv = tmp_path / "legacy.csv"
    csv.write_text(
        "phone,name,birthday,gender,email,plate,home_store_code,consent_push,consent_sms,points\n"
        "13911110001,赵一,1985-03-02,男,,沪A11111,SH-FS01,1,0,1200\n"
        "13911110002,钱二,1990-12-24,女,qian@example.com,,SH-SM01,yes,no,\n"
        "not-a-phone,孙三,1979-02-30,x,,,SH-SM01,1,1,50\n"
        "13911110004,李四,,,,,GZ-FS01,0,0,300\n",
        encoding="utf-8",
    )
    await page.goto("/admin/imports")
    await page.set_input_files("input[type=file]", str(csv))
    await page.click("button:has-text('Check the file')")
    await page.wait_for_url(re.compile(r"/admin/imports/\d+$"))
    assert await page.locator("[data-valid-rows]").get_attribute("data-valid-rows") == "3"
    assert await page.locator("[data-error-rows]").get_attribute("data-error-rows") == "1"
    bad = page.locator("tr[data-line='4']")
    assert "not a valid phone number" in await bad.inner_text()
    assert "birthday" in await bad.inner_text() and "gender" in await bad.inner_text()
    await shot(page, "10-import-preview")
    search = await page.context.new_page()
    await search.goto("/admin/members?q=13911110001")
    assert await search.get_by_text("No member matches").is_visible()  # nothing written yet
    await page.click("button:has-text('Import 3 members')")
    await wait_until(page, "document.querySelector('#import-progress').dataset.status == 'done'")
    assert await page.locator("[data-imported]").get_attribute("data-imported") == "3"
    await shot(page, "11-import-done")
    await search.goto("/admin/members?q=13911110001")
    assert await search.get_by_text("赵一").is_visible()
    await search.goto("/admin/members?q=孙三")
    assert await search.get_by_text("No member matches").is_visible()


async def test_a_form_post_without_the_csrf_token_is_refused(page_for):
    page = await page_for("admin")
    await page.goto("/admin/org")
    await shot(page, "12-org")
    form = page.locator("form[action='/admin/org/regions']")
    await form.locator("input[name='region.name']").fill("No token region")
    await form.locator("input[name=csrf_token]").evaluate("el => el.remove()")
    await form.locator("button[type=submit]").click()
    await page.wait_for_load_state("networkidle")
    assert await page.get_by_text("403").is_visible()
    await page.goto("/admin/org")
    assert "No token region" not in await page.content()
    await page.goto("/admin/settings/program")
    await shot(page, "13-programme-settings")
    await page.fill("input[name=earn_amount]", "1.005")  # the browser's own checks let it pass
    await page.click("button:has-text('Save settings')")
    await page.wait_for_load_state("networkidle")
    assert await page.get_by_text("at most 2 decimals").is_visible()
    assert await page.locator(".field.has-error input[name=earn_amount]").count() == 1
    await shot(page, "14-settings-validation")
