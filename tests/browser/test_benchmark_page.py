"""The leaderboard page in Chromium: ranked table, chart, CSV link, and "Use this miner"."""

import pytest
from playwright.sync_api import expect

from apps.loops.models import Loop
from tests.loops.test_benchmarks import ROWS, finished_benchmark

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_leaderboard_chart_and_use_this_miner(
    page, log_in, live_portal, tiny_loop, admin_user, tmp_path
):
    job = finished_benchmark(tiny_loop, ROWS)
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    page.click("[data-testid=benchmarks-link]")
    expect(page.locator("[data-testid=benchmark-runs]")).to_contain_text(f"#{job.pk}")
    page.click(f"text=#{job.pk}")
    rows = page.locator("[data-testid=leaderboard] tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_have_attribute("data-strategy", "All")
    expect(rows.nth(1)).to_have_attribute("data-strategy", "Coverage")
    # The F1-per-round chart is drawn, with one column per strategy in its numbers table.
    expect(page.locator("#benchmark-chart canvas")).to_have_count(1)
    expect(page.locator("#benchmark-chart table.numbers thead th")).to_have_count(5)
    expect(page.locator("[data-testid=benchmark-csv]")).to_be_visible()
    page.screenshot(path=str(tmp_path / "leaderboard.png"), full_page=True)
    page.click("[data-testid=use-Coverage]")
    page.wait_for_url(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    expect(page.locator(".flash")).to_contain_text("now uses Coverage")
    assert "name: Coverage" in Loop.objects.get(pk=tiny_loop.pk).algorithm_yaml
