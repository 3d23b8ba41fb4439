import os
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory


@pytest.mark.django_db
def test_a_running_job_without_heartbeat_is_failed_and_others_are_left_alone():
    now = timezone.now()
    silent = JobFactory(status=JobStatus.RUNNING, heartbeat_at=now - timedelta(minutes=10))
    beating = JobFactory(status=JobStatus.RUNNING, heartbeat_at=now)
    queued = JobFactory()
    assert services.fail_stale_jobs(120) == [silent.pk]
    silent.refresh_from_db()
    assert silent.status == JobStatus.FAILED
    assert "stopped responding" in silent.message and "stopped responding" in silent.log
    assert Job.objects.get(pk=beating.pk).status == JobStatus.RUNNING
    assert Job.objects.get(pk=queued.pk).status == JobStatus.QUEUED


def test_a_worker_killed_mid_job_leaves_the_job_failed(live_portal, settings):
    admin = UserFactory(role="admin")
    job = services.start_job("system_check", user=admin, params={"step_delay_s": 20})
    deadline = time.monotonic() + 30
    while Job.objects.get(pk=job.pk).status != JobStatus.RUNNING:
        assert time.monotonic() < deadline, live_portal.read_logs()
        time.sleep(0.2)
    worker = live_portal.processes["worker"]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    time.sleep(2.5)  # longer than the silence allowed below; the heartbeat thread died too
    assert services.fail_stale_jobs(2) == [job.pk]
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.finished_at is not None


@pytest.mark.django_db
def test_jobs_cut_off_by_a_stop_of_the_portal_are_failed_at_its_next_start():
    running = JobFactory(status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert services.fail_stale_jobs(0, message="The portal was stopped while this job ran") == [
        running.pk
    ]
    running.refresh_from_db()
    assert running.message == "The portal was stopped while this job ran"
