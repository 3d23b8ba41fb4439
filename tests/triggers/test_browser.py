"""The rule pages in headless Chromium: from the loop's settings to a saved, fired rule."""

import os

import pytest

from apps.triggers.models import TriggerRule
from tests.browser.conftest import browser, csp_blocked, log_in, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SHOTS = os.environ.get("ILPORTAL_SCREENSHOTS")


def shot(page, name):  # noqa: F811
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def test_manage_a_rule_from_the_loop_settings(page, log_in, live_portal, tiny_loop, admin_user):  # noqa: F811
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/settings/")
    page.click("[data-testid=manage-triggers]")
    page.click("[data-testid=new-rule]")
    page.fill("input[name=name]", "nightly")
    page.select_option("select[name=kind]", "time")
    page.fill("input[name=cron]", "0 2 * * *")
    page.fill("input[name=window_start]", "03:00")
    page.fill("input[name=window_end]", "03:00")
    page.click("[data-testid=save-rule]")
    assert "equals its start" in page.inner_text("[data-testid=error-window_end]")
    shot(page, "rule-form-error")
    assert not TriggerRule.objects.exists()

    # No window: the replayed labels were all written just now, whatever the hour.
    page.fill("input[name=window_start]", "")
    page.fill("input[name=window_end]", "")
    page.select_option("select[name=kind]", "sample_count")
    page.fill("input[name=min_samples]", "5")
    page.click("[data-testid=dry-run]")
    assert "Dry run: 3 firings" in page.inner_text("[data-testid=dry-run-result]")
    shot(page, "rule-dry-run")
    assert not TriggerRule.objects.exists()

    page.click("[data-testid=save-rule]")
    page.wait_for_selector("[data-testid=distance]")
    rule = TriggerRule.objects.get()
    assert rule.kind == "sample_count" and rule.cron == ""
    page.click("[data-testid=fire-now]")
    page.wait_for_selector("text=Fired by hand by")
    shot(page, "rule-detail")
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    card = page.inner_text("[data-testid=loop-triggers]")
    assert "nightly" in card and "Fired by hand" in card
    shot(page, "loop-page")
