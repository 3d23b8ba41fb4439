"""A pool process killed under its job: Celery's worker-lost signal marks the job lost at once."""

import time

import psutil

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory


def test_a_pool_process_killed_mid_job_leaves_it_lost_at_once(live_portal):
    job = services.start_job(
        "system_check", user=UserFactory(role="admin"), params={"step_delay_s": 20}
    )
    deadline = time.monotonic() + 60
    while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, live_portal.read_logs()
        time.sleep(0.2)
    [pool_process] = psutil.Process(live_portal.processes["worker"].pid).children()
    killed_at = time.monotonic()
    pool_process.kill()
    while Job.objects.get(pk=job.pk).status == JobStatus.RUNNING:
        assert time.monotonic() - killed_at < 20, live_portal.read_logs()
        time.sleep(0.2)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.message.startswith("lost: its worker died"), job.message
    assert "lost: its worker died" in job.log
