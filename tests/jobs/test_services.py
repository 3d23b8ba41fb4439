import threading

import pytest
from django.db import connection

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_start_job_enqueues_only_after_commit(monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(services, "_enqueue", lambda *args: sent.append(args))
    admin = UserFactory(role="admin")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = services.start_job("system_check", user=admin)
        assert sent == []
    assert len(callbacks) == 1
    assert sent == [(job.pk, "ilportal.system_check", "default")]
    assert job.status == JobStatus.QUEUED
    assert job.started_by == f"user:{admin.username}"


def test_a_job_is_claimed_once():
    job = JobFactory()
    assert services.claim_job(job.pk, worker="w1") is True
    assert services.claim_job(job.pk, worker="w2") is False
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.worker == "w1"
    assert job.started_at is not None and job.heartbeat_at is not None


def test_a_cancelled_job_is_not_claimed():
    job = JobFactory(status=JobStatus.CANCELLED)
    assert services.claim_job(job.pk, worker="w1") is False


def test_cancelling_a_queued_job_ends_it_at_once():
    job = JobFactory()
    services.cancel_job(job.pk, user=UserFactory(role="admin"))
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_of_cancels_racing_on_one_job_one_cancels_it_and_the_others_are_told(monkeypatch):
    """A double click on Cancel: one cancels, the others hear the job is cancelled already."""
    job, admin = JobFactory(), UserFactory(role="admin")
    barrier, outcomes = threading.Barrier(4), []

    def cancel():
        barrier.wait()
        try:
            outcomes.append(services.cancel_job(job.pk, user=admin).status)
        except services.JobNotActive as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=cancel) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [f"Job #{job.pk} is cancelled: nothing to cancel."] * 3 + [
        JobStatus.CANCELLED
    ]
    finished = JobFactory(status=JobStatus.SUCCEEDED)
    with pytest.raises(services.JobNotActive, match="is succeeded: nothing to cancel"):
        services.cancel_job(finished.pk, user=admin)
    assert Job.objects.get(pk=finished.pk).cancel_requested is False


def test_cancelling_a_running_job_is_seen_at_its_next_progress_report():
    job = JobFactory()
    services.claim_job(job.pk, worker="w1")
    assert services.record_progress(job.pk, 10, "step 1") is False
    services.cancel_job(job.pk, user=UserFactory(role="admin"))
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING
    assert services.record_progress(job.pk, 20, "step 2") is True


def test_finish_only_applies_to_a_running_job():
    job = JobFactory()
    assert services.finish_job(job.pk, JobStatus.SUCCEEDED, message="Done") is False
    services.claim_job(job.pk, worker="w1")
    assert services.finish_job(job.pk, JobStatus.SUCCEEDED, message="Done", result={"a": 1})
    job.refresh_from_db()
    assert (job.status, job.progress, job.result) == (JobStatus.SUCCEEDED, 100, {"a": 1})
    assert services.finish_job(job.pk, JobStatus.FAILED, message="late") is False


def test_progress_is_clamped_and_logged():
    job = JobFactory()
    services.claim_job(job.pk, worker="w1")
    services.record_progress(job.pk, 140, "over")
    services.append_log(job.pk, "first")
    services.append_log(job.pk, "second")
    job.refresh_from_db()
    assert job.progress == 100
    assert job.log.splitlines()[0].endswith("first")
    assert job.log.splitlines()[1].endswith("second")


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown job kind 'nope'; known: .*system_check"):
        services.start_job("nope")


def test_one_active_job_per_kind_and_scope(monkeypatch):
    monkeypatch.setattr(services, "_enqueue", lambda *args: None)
    first = services.start_job("system_check", scope="loop:1")
    with pytest.raises(services.JobAlreadyActive) as refused:
        services.start_job("system_check", scope="loop:1")
    assert refused.value.job == first
    assert services.start_job("system_check", scope="loop:2").pk != first.pk
    assert services.start_job("system_check").pk and services.start_job("system_check").pk
    services.claim_job(first.pk, worker="w")
    services.finish_job(first.pk, JobStatus.SUCCEEDED, message="Done")
    assert services.start_job("system_check", scope="loop:1").pk != first.pk
