import pytest
from playwright.sync_api import expect

from apps.jobs.models import Job
from tests.factories import UserFactory

pytestmark = pytest.mark.browser


def test_admin_starts_a_system_check_and_watches_it_finish_without_reloading(
    page, log_in, live_portal
):
    log_in(UserFactory(role="admin"))
    page.click("text=Jobs")
    page.click("[data-testid=start-system_check]")
    page.wait_for_url(f"{live_portal.url}/jobs/*/")
    # A marker that a reload would wipe out.
    page.evaluate("window.__noReload = true")

    expect(page.locator("[data-field=connection]")).to_contain_text("connected")
    bar = page.locator("[data-testid=progress]")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(page.locator("[data-field=status]")).to_have_text("succeeded")
    expect(page.locator("[data-field=log]")).to_contain_text("Workers: ok")
    assert page.evaluate("window.__noReload") is True
    assert Job.objects.get().status == "succeeded"


def test_wrong_password_shows_an_error_in_the_browser(page, live_portal):
    UserFactory(username="bob", role="viewer")
    page.goto(f"{live_portal.url}/login/")
    page.fill("input[name=username]", "bob")
    page.fill("input[name=password]", "not his password")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("didn't match")


def test_a_viewer_sees_jobs_but_no_start_button(page, log_in, live_portal):
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/jobs/")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator("[data-testid=start-system_check]")).to_have_count(0)
