from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


def lost_training(loop):
    return JobFactory(
        kind="train",
        scope=loop.job_scope,
        params={"loop_id": loop.pk},
        status=JobStatus.RUNNING,
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )


def test_a_lost_training_is_retried_once_when_the_loop_says_so(tiny_loop):
    tiny_loop.retry_lost_jobs = True
    tiny_loop.save()
    lost = lost_training(tiny_loop)
    jobs.fail_stale_jobs(120)
    retry = Job.objects.exclude(pk=lost.pk).get()
    assert (retry.kind, retry.status, retry.params["retry_of"]) == ("train", "queued", lost.pk)
    assert retry.started_by == f"retry of job #{lost.pk} (its worker died)"

    Job.objects.filter(pk=retry.pk).update(
        status=JobStatus.RUNNING, heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    jobs.fail_stale_jobs(120)
    assert Job.objects.count() == 2  # a retry that dies too is not retried again


def test_without_the_setting_a_lost_training_just_fails(tiny_loop):
    lost = lost_training(tiny_loop)
    jobs.fail_stale_jobs(120)
    assert list(Job.objects.values_list("pk", "status")) == [(lost.pk, "failed")]
