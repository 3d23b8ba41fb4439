import pytest
from playwright.sync_api import expect

from apps.jobs.models import Job
from tests.browser.test_dashboard_pages import in_a_thread

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


def test_the_loop_page_follows_its_running_jobs_live_and_reloads_when_one_ends(
    page, log_in, live_portal, tiny_loop, admin_user
):
    from apps.jobs import services

    def running_train():
        return Job.objects.create(
            kind="train",
            status="running",
            trigger="manual",
            scope=tiny_loop.job_scope,
            params={"loop_id": tiny_loop.pk},
            started_by="alice",
            message="Started",
        )

    job = running_train()
    log_in(admin_user)
    page.goto(f"{live_portal.url}/loops/{tiny_loop.pk}/")
    button = page.locator("[data-testid=running-train]")
    recent = page.locator(f"[data-testid=recent-job-{job.pk}]")
    expect(button).to_have_text(f"Train running: #{job.pk} (0%)")
    page.evaluate("window.__noReload = true")
    page.wait_for_timeout(1000)  # the page's WebSocket connects
    for percent in (20, 55):
        in_a_thread(lambda p=percent: services.record_progress(job.pk, p, f"step {p}/100"))
        expect(button).to_have_text(f"Train running: #{job.pk} ({percent}%)")
    expect(recent).to_contain_text("step 55/100")
    assert page.evaluate("window.__noReload") is True

    # Its end changes the page (versions, the button): the page reloads by itself.
    in_a_thread(lambda: services.finish_job(job.pk, "succeeded", message="done"))
    expect(page.locator("[data-testid=train-now]")).to_be_visible()
    expect(button).to_have_count(0)
    assert page.evaluate("window.__noReload") is None

    # ... unless the user has typed into a form on it: then a notice offers the reload.
    job = running_train()
    page.reload()
    page.locator("summary", has_text="Add a model version").click()
    page.fill("input[name=object_storage_uri]", "s3://bucket/half-typed")
    page.evaluate("window.__noReload = true")
    page.wait_for_timeout(1000)
    in_a_thread(lambda: services.finish_job(job.pk, "failed", message="boom"))
    expect(page.locator("[data-testid=stale-page]")).to_contain_text(
        f"Job #{job.pk} has ended (failed)"
    )
    expect(page.locator(f"[data-testid=recent-job-{job.pk}]")).to_contain_text("failed")
    assert page.evaluate("window.__noReload") is True
    assert page.input_value("input[name=object_storage_uri]") == "s3://bucket/half-typed"
