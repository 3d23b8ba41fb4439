"""The dashboard pages in headless Chromium: live progress on the home page, version compare,
confirm steps, error pages, viewers without buttons, and a screenshot of each main page saved
under test-artifacts/ for review (not compared pixel by pixel)."""

import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

from apps.jobs.models import Job
from bench.page_data import build
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
LAPTOP = {"width": 1366, "height": 850}
PHONE = {"width": 390, "height": 844}


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def in_a_thread(work) -> None:
    """Playwright's sync API holds an event loop in this thread; the job events that the portal
    publishes (async_to_sync) are sent from another thread, as a worker would."""
    errors = []

    def run():
        try:
            work()
        except Exception as exc:  # reported in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


@pytest.fixture
def big_portal(live_portal):
    return build(samples=300, versions=4, jobs=12)


def test_the_home_page_shows_a_running_jobs_progress_rising_without_a_reload(
    page, log_in, live_portal, big_portal
):
    from apps.jobs import services

    job = Job.objects.create(
        kind="train",
        status="running",
        trigger="manual",
        scope=big_portal.loop.job_scope,
        params={"loop_id": big_portal.loop.pk},
        started_by="alice",
        progress=5,
        message="step 1/40",
    )
    page.set_viewport_size(LAPTOP)
    log_in(UserFactory(role="admin"))
    card = page.locator(f"[data-testid=live-job-{job.pk}]")
    expect(card).to_contain_text("Training #")
    page.evaluate("window.__noReload = true")
    page.wait_for_timeout(1000)  # the card's WebSocket connects
    for percent in (20, 55):
        in_a_thread(lambda p=percent: services.record_progress(job.pk, p, f"step {p}/100"))
        expect(card.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", str(percent))
    expect(card).to_contain_text("step 55/100")
    assert page.evaluate("window.__noReload") is True
    screenshot(page, "home-laptop")
    page.set_viewport_size(PHONE)
    screenshot(page, "home-phone")


def test_version_compare_shows_both_versions_per_class_numbers(
    page, log_in, live_portal, big_portal
):
    page.set_viewport_size(LAPTOP)
    log_in(UserFactory(role="viewer"))
    loop = big_portal.loop
    page.goto(f"{live_portal.url}/loops/{loop.pk}/")
    expect(page.locator("#versions-chart canvas")).to_have_count(1)
    page.locator("#versions-chart details.chart-data summary").click()
    expect(page.locator("#versions-chart table.numbers")).to_contain_text("v4")
    screenshot(page, "loop-laptop")
    page.select_option("select[name=a]", "2")
    page.select_option("select[name=b]", "4")
    page.click("[data-testid=compare]")
    per_class = page.locator("[data-testid=per-class-edge]")
    expect(per_class).to_contain_text("F1 v2")
    expect(per_class).to_contain_text("F1 v4")
    edge = {e.version.number: e for e in _latest_edge(loop)}
    for number in (2, 4):
        vest = edge[number].metrics["per_class"]["vest"]["f1"]
        expect(per_class).to_contain_text(f"{vest:.3f}")
    expect(per_class.locator("tr", has_text="glove")).to_contain_text("n/a")
    screenshot(page, "compare-laptop")
    page.goto(f"{live_portal.url}/loops/{loop.pk}/v4/")
    expect(page.locator("[data-testid=what-changed]")).to_contain_text("100 samples added")
    screenshot(page, "version-laptop")
    page.goto(f"{live_portal.url}/jobs/")
    screenshot(page, "jobs-laptop")
    page.goto(f"{live_portal.url}/datasets/{big_portal.dataset.pk}/")
    screenshot(page, "dataset-laptop")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_portal.url}/loops/{loop.pk}/")
    screenshot(page, "loop-phone")


def _latest_edge(loop):
    from apps.loops.models import Evaluation

    latest = {}
    for evaluation in Evaluation.objects.filter(
        version__loop=loop, evaluation_set="edge"
    ).select_related("version"):
        latest[evaluation.version.number] = evaluation
    return latest.values()


def test_error_pages_render_inside_the_layout(page, log_in, live_portal):
    page.set_viewport_size(LAPTOP)
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/no/such/page/")
    expect(page.locator("[data-testid=error-page] h1")).to_have_text("Page not found")
    expect(page.locator("header.topbar nav")).to_contain_text("Overview")
    screenshot(page, "error-404")
    page.goto(f"{live_portal.url}/loops/new/")
    expect(page.locator("[data-testid=error-page] h1")).to_have_text("Not allowed")
    expect(page.locator("header.topbar")).to_be_visible()
    screenshot(page, "error-403")


def test_viewers_see_no_action_buttons(page, log_in, live_portal, big_portal):
    log_in(UserFactory(role="viewer"))
    loop = big_portal.loop
    for url in (f"/loops/{loop.pk}/", f"/loops/{loop.pk}/v3/", f"/loops/{loop.pk}/v4/", "/"):
        page.goto(f"{live_portal.url}{url}")
        expect(page.locator("main form[method=post]")).to_have_count(0)
        expect(page.locator("[data-testid=train-now]")).to_have_count(0)


@pytest.mark.slow
def test_deploy_and_roll_back_ask_to_confirm_then_move_the_deployed_version(
    page, log_in, live_portal, tiny_loop, admin_user
):
    """Real archives (one tiny training in this process), deployed by the live worker."""
    from apps.jobs import services as jobs
    from apps.jobs.runner import run_job
    from apps.loops import services
    from apps.loops.models import ModelVersion
    from apps.loops.training import run_training

    def train_and_register_twice():
        job = services.start_training(tiny_loop, user=admin_user)
        run_job(job.pk, "test-worker", run_training)

    original_enqueue = jobs._enqueue
    jobs._enqueue = lambda *args: None  # the training runs here, not in the live worker
    try:
        in_a_thread(train_and_register_twice)
    finally:
        jobs._enqueue = original_enqueue
    v1 = ModelVersion.objects.get(loop=tiny_loop, number=1)
    archive = live_portal.media_root / v1.artifact.name
    v2 = services.register_version(tiny_loop, str(archive), source="uploaded")
    ModelVersion.objects.filter(pk__in=(v1.pk, v2.pk)).update(gate_passed=True)
    in_a_thread(
        lambda: services.move_deployed_pointer(
            v1.pk, action="deploy", started_by="test", reason="", job_id=None
        )
    )

    page.set_viewport_size(LAPTOP)
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    page.click("[data-testid=deploy-v2]")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Deploy v2 of line-3? Devices get v2; v1 stops serving.")
    screenshot(page, "confirm-deploy")
    page.click("[data-testid=confirm-no]")
    expect(dialog).to_be_hidden()
    assert not Job.objects.filter(kind="deploy").exists()

    page.click("[data-testid=deploy-v2]")
    page.click("[data-testid=confirm-yes]")
    page.wait_for_url(f"{live_portal.url}/jobs/*/")
    expect(page.locator("[data-field=status]")).to_have_text("succeeded", timeout=120_000)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    expect(page.locator("[data-testid=deployed]")).to_have_text("v2")
    expect(page.locator("[data-testid=deployments]")).to_contain_text("v1 → v2")

    page.click("[data-testid=rollback-v1]")
    expect(dialog).to_contain_text("Roll back line-3 to v1? Devices get v1; v2 stops serving.")
    page.click("[data-testid=confirm-yes]")
    page.wait_for_url(f"{live_portal.url}/jobs/*/")
    expect(page.locator("[data-field=status]")).to_have_text("succeeded", timeout=120_000)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    expect(page.locator("[data-testid=deployed]")).to_have_text("v1")
    expect(page.locator("[data-testid=deployments]")).to_contain_text("v2 → v1")
    expect(page.locator("[data-testid=deployments]")).to_contain_text("Rollback")
