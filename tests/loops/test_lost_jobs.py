"""A job whose worker died after its effect committed ends succeeded, not failed."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.loops import services
from apps.loops.models import ModelVersion
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


def _version(loop, number, **fields):
    return ModelVersion.objects.create(
        loop=loop,
        number=number,
        source="trained",
        artifact=f"models/v{number}.zip",
        artifact_sha256="0" * 64,
        artifact_size=1,
        **fields,
    )


def _running(loop, kind, **params):
    return JobFactory(
        kind=kind,
        scope=loop.job_scope,
        params={"loop_id": loop.pk, **params},
        status=JobStatus.RUNNING,
        worker="default@host",
        heartbeat_at=timezone.now() - timedelta(minutes=10),
    )


def test_a_deploy_whose_worker_died_after_the_pointer_moved_succeeded(tiny_loop):
    first = _version(tiny_loop, 1)
    services.move_deployed_pointer(
        first.pk, action="deploy", started_by="t", reason="", job_id=None
    )
    second = _version(tiny_loop, 2, gate_passed=True)
    job = _running(tiny_loop, "deploy", version_id=second.pk, action="deploy")
    services.move_deployed_pointer(
        second.pk, action="deploy", started_by="t", reason="", job_id=job.pk
    )

    assert jobs.fail_jobs_of_worker("default@host", "worker-default exited with status -9") == []
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.message == "deploy of v2 done; its worker died after the deploy"
    assert job.result["deployed"] == "v2" and job.result["previous"] == "v1"
    assert "its worker died after the deploy (lost: its worker died (worker-default" in job.log


def test_a_deploy_whose_worker_died_before_the_pointer_moved_failed(tiny_loop):
    version = _version(tiny_loop, 1, gate_passed=True)
    job = _running(tiny_loop, "deploy", version_id=version.pk, action="deploy")
    assert jobs.fail_stale_jobs(120) == [job.pk]
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_a_training_whose_worker_died_after_registering_succeeded_and_is_evaluated(tiny_loop):
    tiny_loop.auto_evaluate = tiny_loop.retry_lost_jobs = True
    tiny_loop.save()
    job = _running(tiny_loop, "train")
    version = _version(tiny_loop, 1, train_job=job)

    assert jobs.fail_stale_jobs(120) == []
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.message
    assert job.message == "Registered v1; its worker died after registering it"
    assert job.result["version_id"] == version.pk
    assert not Job.objects.filter(kind="train").exclude(pk=job.pk).exists()  # no retry
    # Its evaluation had not started: the periodic retry of skipped evaluations starts it.
    [evaluation] = services.retry_skipped_evaluations()
    assert Job.objects.get(pk=evaluation).params["version_id"] == version.pk


def test_a_training_whose_evaluation_already_started_is_not_evaluated_twice(tiny_loop):
    tiny_loop.auto_evaluate = True
    tiny_loop.save()
    job = _running(tiny_loop, "train")
    version = _version(tiny_loop, 1, train_job=job)
    evaluation = services.start_evaluation(version)

    jobs.fail_stale_jobs(120)
    job.refresh_from_db()
    assert job.result["follow_up"] == {
        "what": "evaluate v1",
        "started": True,
        "job_id": evaluation.pk,
    }
    assert services.retry_skipped_evaluations() == []
