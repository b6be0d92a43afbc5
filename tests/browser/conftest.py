"""Browser tests: the platform launched once per test worker with `songda run` (every process, the sandboxes and
the carrier simulator included), and Debian's Chromium driven by Playwright (`playwright install` can't download
here; `make test` installs the `chromium` package when it is missing). Every test in this folder runs on one xdist
worker (group "browser"), so one platform serves them all."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from deploy.local.demo import Walk
from deploy.local.ports import free_port
from deploy.local.postgres import fallback_data_dir
from tests.platform import launch, stop, walk_of

# `make screenshots` keeps the main screens' pictures for the README here; a plain test run takes them elsewhere.
SCREENS = Path(__file__).resolve().parents[2] / "docs" / "screens"
# As a shop's tablet would run it; the flags keep Chromium off this machine's closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.xdist_group("browser"))
            item.add_marker(pytest.mark.stack)


@dataclass
class Platform:
    printed: dict[str, str]
    url: str = field(init=False)
    admin_login: str = field(init=False)
    admin_password: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = self.printed["gateway"]
        admin = re.match(r"login=(\S+) password=(\S+)", self.printed["demo admin"])
        assert admin, self.printed["demo admin"]
        self.admin_login, self.admin_password = admin.groups()

    def walk(self) -> Walk:
        return walk_of(self.printed)


@pytest.fixture(scope="session")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    state_dir = tmp_path_factory.mktemp("browser-platform")
    process, printed = launch(state_dir, free_port())
    try:
        yield Platform(printed)
    finally:
        stop(process)
        # As root the data lives outside the state dir (the PostgreSQL user cannot enter it): removed here.
        shutil.rmtree(fallback_data_dir(state_dir), ignore_errors=True)


@pytest.fixture
def walk(platform: Platform) -> Iterator[Walk]:
    """The demo's client of the platform (customer, merchant, rider and ops tokens; the payment sandbox)."""
    opened = platform.walk()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Chromium is missing: `make test` installs Debian's chromium package"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def context(browser: Browser, platform: Platform) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile per test (no session left over from another), on a tablet-sized screen."""
    opened = await browser.new_context(base_url=platform.url, viewport={"width": 1180, "height": 820})
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def sign_in(page: Page, login: str, password: str) -> None:
    await page.goto("/console/")
    await page.fill("#sign-in input[name=login]", login)
    await page.fill("#sign-in input[name=password]", password)
    await page.click("#sign-in button[type=submit]")
    await page.wait_for_selector("header.top nav.tabs")


async def screenshot(page: Page, name: str) -> None:
    """A screenshot of a main screen: into docs/screens/ for the README under `make screenshots`
    (SONGDA_SCREENSHOTS=docs), otherwise into a temporary folder, so a test run leaves the checkout as it was."""
    folder = (
        SCREENS if os.environ.get("SONGDA_SCREENSHOTS") == "docs" else Path(tempfile.gettempdir()) / "songda-screens"
    )
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=False)
