"""The sections of triggers, labeling and edge in headless Chromium: the home card shows the hard
examples waiting (linked to the queue) and the labels toward the nearest sample-count rule; the
loop page and the fleet page draw their charts with the numbers behind them."""

import pytest
from playwright.sync_api import expect

from apps.datasets.models import Sample
from apps.triggers import conditions
from apps.triggers.models import Decision
from bench.page_data import add_loop_activity, build
from tests.browser.test_dashboard_pages import LAPTOP, screenshot
from tests.factories import UserFactory, make_sample

pytestmark = pytest.mark.browser


@pytest.fixture
def busy_loop(live_portal):
    portal = build(samples=140, versions=3, jobs=2)
    loop = add_loop_activity(portal, loops=1, rules=3, decisions=4, devices=2, intake=40)[0]
    for seed in range(3):  # labels the latest trained version has not seen
        make_sample(portal.dataset, seed=500 + seed, boxes=[("vest", 1, 1, 20, 20)], split="train")
    return loop


def test_the_home_card_shows_hard_examples_waiting_and_the_label_progress(
    page, log_in, live_portal, busy_loop
):
    loop = busy_loop
    waiting = Sample.objects.filter(dataset=loop.dataset, status="queued").count()
    unseen = conditions.unseen_labeled_samples(loop).count()
    assert waiting > 0 and unseen >= 3
    page.set_viewport_size(LAPTOP)
    log_in(UserFactory(role="admin"))
    card = page.locator(f"[data-testid=loop-card-{loop.pk}]")
    expect(card.locator(f"[data-testid=waiting-{loop.pk}]")).to_contain_text(
        f"{waiting} hard examples waiting for labels"
    )
    progress = card.locator(f"[data-testid=label-progress-{loop.pk}] [role=progressbar]")
    expect(progress).to_have_attribute("aria-valuenow", str(unseen))
    expect(progress).to_have_attribute("aria-valuemax", "50")  # rule-0: 50 labels
    expect(card).to_contain_text(f"{unseen} of 50")
    newest = Decision.objects.filter(rule__loop=loop).first()  # the labels above were evaluated
    expect(card.locator(f"[data-testid=last-decision-{loop.pk}]")).to_contain_text(newest.message)
    expect(card.locator("ul.alerts")).to_contain_text("1 device silent")
    screenshot(page, "home-loop-sections")
    card.get_by_role("link", name="labeling queue").click()
    page.wait_for_url(f"**/label/datasets/{loop.dataset_id}/")
    expect(page.locator("body")).to_contain_text(str(waiting))


def test_the_loop_and_fleet_pages_draw_the_activity_charts(page, log_in, live_portal, busy_loop):
    loop = busy_loop
    page.set_viewport_size(LAPTOP)
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/loops/{loop.pk}/")
    for chart in ("labels-chart", "intake-chart", "volumes-chart"):
        expect(page.locator(f"#{chart} canvas")).to_be_visible()
    intake = page.locator("#intake-chart details.chart-data")
    intake.locator("summary").click()
    expect(intake.locator("table.numbers tbody tr")).to_have_count(30)  # one row a day
    expect(intake.locator("table.numbers thead")).to_contain_text("hard, queued for labeling")
    expect(intake.locator("a.csv")).to_have_attribute(
        "download", f"hard-examples-per-day-loop-{loop.pk}.csv"
    )
    expect(page.locator("[data-testid=loop-triggers]")).to_contain_text("of 50 labels")
    expect(page.locator("[data-testid=labeling-queue-link]")).to_be_visible()
    screenshot(page, "loop-sections")
    page.click("[data-testid=fleet-link]")
    page.wait_for_url(f"**/edge/#fleet-loop-{loop.pk}")
    expect(page.locator(f"[data-testid=fleet-volumes-{loop.pk}] canvas")).to_be_visible()
    screenshot(page, "fleet-volumes")
