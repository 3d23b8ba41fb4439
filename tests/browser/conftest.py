import os
import shutil

import pytest

from tests.loops.conftest import synthetic_dataset, tiny_loop  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture
def browser():
    """Per test: Playwright's sync API holds an event loop in this thread while it runs, and
    Django's async_to_sync (used to publish job events) refuses to run beside one."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("ILPORTAL_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
        pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def csp_blocked():
    """What the Content-Security-Policy blocked on the test's pages, as Chromium logged it."""
    return []


@pytest.fixture
def page(browser, tmp_path, csp_blocked):
    """A page whose every load is also a check of the Content-Security-Policy: Chromium logs each
    script, style or image the policy blocked, and any such line fails the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked = csp_blocked
    context.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    page.screenshot(path=str(tmp_path / "last.png"))
    context.close()
    assert not blocked, "the page's Content-Security-Policy blocked:\n" + "\n".join(blocked)


@pytest.fixture
def log_in(page, live_portal):
    from tests.factories import PASSWORD

    def as_user(user):
        page.goto(f"{live_portal.url}/login/")
        page.fill("input[name=username]", user.username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_portal.url}/")

    return as_user
