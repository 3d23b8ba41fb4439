import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_admin_clicks_train_now_watches_progress_and_sees_the_new_version(
    page, log_in, live_portal, tiny_loop, admin_user
):
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    expect(page.locator("[data-testid=deployed]")).to_have_text("none")
    page.click("[data-testid=train-now]")
    page.wait_for_url(f"{live_portal.url}/jobs/*/")
    page.evaluate("window.__noReload = true")
    expect(page.locator("[data-testid=progress]")).to_have_attribute(
        "aria-valuenow", "100", timeout=120_000
    )
    expect(page.locator("[data-field=status]")).to_have_text("succeeded")
    expect(page.locator("[data-field=chart] canvas")).to_have_count(1)
    assert page.evaluate("window.__noReload") is True

    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    versions = page.locator("[data-testid=versions]")
    expect(versions).to_contain_text("v1")
    expect(versions).to_contain_text("candidate")
    expect(versions).to_contain_text("not evaluated")
