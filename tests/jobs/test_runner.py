import pytest

from apps.jobs import services
from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import JobProgress, run_job
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_successful_body_stores_its_result():
    job = JobFactory()

    def body(job, progress):
        progress.update(50, "half")
        progress.log("hello")
        return {"answer": 42}

    assert run_job(job.pk, "w1", body) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert (job.status, job.progress, job.result) == (JobStatus.SUCCEEDED, 100, {"answer": 42})
    assert "hello" in job.log


def test_an_exception_fails_the_job_with_its_message_and_traceback():
    job = JobFactory()

    def body(job, progress):
        raise OSError("disk full")

    assert run_job(job.pk, "w1", body) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.message == "OSError: disk full"
    assert "Traceback" in job.log and job.finished_at is not None


def test_a_cancel_request_stops_the_body_at_its_next_report():
    job = JobFactory()
    admin = UserFactory(role="admin")
    reached = []

    def body(job, progress):
        progress.update(10, "working", force=True)
        services.cancel_job(job.pk, user=admin)
        progress.update(20, "still working", force=True)
        reached.append("after cancel")
        return {}

    assert run_job(job.pk, "w1", body) == JobStatus.CANCELLED
    assert reached == []
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_a_second_delivery_does_not_run_the_body_again():
    job = JobFactory()
    calls = []

    def body(job, progress):
        calls.append(job.pk)
        return {}

    run_job(job.pk, "w1", body)
    assert run_job(job.pk, "w2", body) is None
    assert calls == [job.pk]


def test_progress_writes_are_throttled_but_the_end_is_always_written(monkeypatch):
    job = JobFactory()
    services.claim_job(job.pk, worker="w1")
    writes = []
    monkeypatch.setattr(
        services, "record_progress", lambda job_id, pct, msg, chart: writes.append(pct) or False
    )
    progress = JobProgress(Job.objects.get(pk=job.pk), min_interval_s=60)
    for percent in range(0, 101, 10):
        progress.update(percent, "step")
    assert writes == [0, 100]


def test_chart_points_are_kept_between_throttled_writes(monkeypatch):
    job = JobFactory()
    services.claim_job(job.pk, worker="w1")
    progress = JobProgress(Job.objects.get(pk=job.pk), min_interval_s=60)
    for step in range(1, 6):
        progress.update(step * 20, "training", point={"step": step, "loss": 1.0 / step})
    job.refresh_from_db()
    assert [p["step"] for p in job.chart] == [1, 2, 3, 4, 5]
