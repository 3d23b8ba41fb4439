"""The job page re-reads the job whenever its WebSocket (re)connects: what was written while the
socket was away (and whose broadcast was lost) still reaches the page."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.browser


def test_a_reconnect_catches_up_on_state_and_log_missed_meanwhile(page, log_in, live_portal):
    job = JobFactory(status=JobStatus.RUNNING, heartbeat_at=timezone.now(), progress=10)
    sockets = []

    def through(ws):
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket("**/ws/jobs/**", through)
    log_in(UserFactory(role="viewer"))
    page.goto(f"{live_portal.url}/jobs/{job.pk}/")
    expect(page.locator("[data-field=connection]")).to_contain_text("connected")
    assert len(sockets) == 1

    # Written straight to the database: no broadcast reaches the page (as in a Redis outage).
    Job.objects.filter(pk=job.pk).update(
        progress=60, message="written while away", log="12:00:00 line the page never heard\n"
    )
    sockets[0].close()  # the socket drops; the page reconnects by itself
    expect(page.locator("[data-field=log]")).to_contain_text("line the page never heard")
    expect(page.locator("[data-field=message]")).to_have_text("written while away")
    expect(page.locator("[data-testid=progress]")).to_have_attribute("aria-valuenow", "60")
    expect(page.locator("[data-field=connection]")).to_contain_text("connected", timeout=20_000)
    assert len(sockets) >= 2
