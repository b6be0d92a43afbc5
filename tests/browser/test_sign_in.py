"""Signing in to the console: the demo admin gets the board; a wrong password is refused with the API's words and no
session; signing out forgets the tokens."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import Platform, sign_in


async def test_the_admin_signs_in_sees_the_board_and_signs_out(page: Page, platform: Platform) -> None:
    await sign_in(page, platform.admin_login, platform.admin_password)
    await expect(page.locator("nav.tabs a.active")).to_have_attribute("data-view", "board")
    await expect(page.locator("#store-picker")).to_have_value("demo-store")
    assert await page.evaluate("sessionStorage.getItem('songda.console.session') !== null")

    await page.click("#sign-out")
    await expect(page.locator("#sign-in")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('songda.console.session') === null")


async def test_a_wrong_password_is_refused(page: Page, platform: Platform) -> None:
    await page.goto("/console/")
    await page.fill("#sign-in input[name=login]", platform.admin_login)
    await page.fill("#sign-in input[name=password]", "not-the-password")
    await page.click("#sign-in button[type=submit]")
    await expect(page.locator("#sign-in .error")).not_to_be_empty()
    assert await page.evaluate("sessionStorage.getItem('songda.console.session') === null")


async def test_the_pages_forbid_inline_script_and_framing(page: Page, platform: Platform) -> None:
    response = await page.goto("/console/")
    assert response is not None
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
