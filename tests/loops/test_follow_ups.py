"""A refused follow-up start does not turn a successful job into a failed one."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import run_job
from apps.loops import evaluation, services
from apps.loops.models import Deployment, ModelVersion
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

METRICS = {"mAP": 0.5, "f1": 0.6, "precision": 0.6, "recall": 0.6, "per_class": {}}


@pytest.fixture
def measured_without_tensorflow(monkeypatch):
    """The evaluation's measurements are the ML core's business (tested there); here they are
    fixed so that what happens after the gate is what is tested."""
    monkeypatch.setattr(evaluation.ml_models, "load_version", lambda version: object())
    monkeypatch.setattr(evaluation.ml_models, "measure", lambda model, data: dict(METRICS))
    monkeypatch.setattr(evaluation.ml_models, "discard", lambda model: None)


def _candidate(loop, number=1, **fields):
    return ModelVersion.objects.create(
        loop=loop,
        number=number,
        source="uploaded",
        artifact=f"models/v{number}.zip",
        artifact_sha256="0" * 64,
        artifact_size=1,
        **fields,
    )


def test_a_passed_gate_whose_deploy_is_refused_succeeds_and_records_why(
    tiny_loop, measured_without_tensorflow, client, admin_user
):
    tiny_loop.auto_deploy = True
    tiny_loop.save()
    version = _candidate(tiny_loop, number=4)
    rollback = JobFactory(
        kind="deploy", scope=tiny_loop.job_scope, status=JobStatus.RUNNING,
        params={"action": "rollback", "version_id": version.pk},
    )  # fmt: skip
    job = JobFactory(kind="evaluate", scope=tiny_loop.job_scope, params={"version_id": version.pk})

    assert run_job(job.pk, "w1", evaluation.run_evaluation) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.result["gate_passed"] is True
    follow_up = job.result["follow_up"]
    assert follow_up["started"] is False and follow_up["will_retry"] is False
    assert follow_up["reason"] == (
        f"deploy v4: the gate passed; a rollback was running (job #{rollback.pk})"
    )
    assert "Deploy it from its page" in job.log
    version.refresh_from_db()
    assert version.gate_passed is True and version.stage == "candidate"
    # Offered on the version's page, with its Deploy button.
    client.force_login(admin_user)
    Job.objects.filter(pk=rollback.pk).update(status=JobStatus.SUCCEEDED)
    page = client.get(f"/loops/{tiny_loop.pk}/v4/").content.decode()
    assert "a rollback was running" in page and "Start it below when ready." in page
    assert 'data-testid="deploy"' in page


def test_an_evaluation_refused_after_training_is_recorded_and_retried_when_free(tiny_loop):
    version = _candidate(tiny_loop, number=6)
    busy = JobFactory(kind="evaluate", scope=tiny_loop.job_scope, status=JobStatus.RUNNING)
    note = services.start_follow_up(
        "evaluate v6",
        "training registered it",
        lambda: services.start_evaluation(version),
        retry=True,
    )
    assert note == {
        "what": "evaluate v6",
        "started": False,
        "reason": f"evaluate v6: training registered it; evaluate job #{busy.pk} was running",
        "will_retry": True,
    }
    train = JobFactory(
        kind="train", status=JobStatus.SUCCEEDED,
        result={"version_id": version.pk, "follow_up": note},
    )  # fmt: skip
    assert services.retry_skipped_evaluations() == []  # still blocked
    Job.objects.filter(pk=busy.pk).update(status=JobStatus.SUCCEEDED)

    [started] = services.retry_skipped_evaluations()
    assert Job.objects.get(pk=started).params["version_id"] == version.pk
    train.refresh_from_db()
    assert train.result["follow_up"]["started"] is True
    assert train.result["follow_up"]["job_id"] == started
    assert services.retry_skipped_evaluations() == []  # once


@pytest.mark.parametrize("rolled_back_during_training", [True, False])
def test_a_rollback_since_the_training_started_is_not_undone_by_the_automatic_deploy(
    tiny_loop, measured_without_tensorflow, rolled_back_during_training
):
    tiny_loop.auto_deploy = True
    tiny_loop.save()
    first, second = _candidate(tiny_loop, number=1), _candidate(tiny_loop, number=2)
    for version in (first, second):
        services.move_deployed_pointer(
            version.pk, action="deploy", started_by="t", reason="", job_id=None
        )
    started = timezone.now() - timedelta(minutes=5)
    Deployment.objects.update(created_at=started - timedelta(minutes=5))
    train = JobFactory(kind="train", status=JobStatus.SUCCEEDED, started_at=started)
    rollback = JobFactory(kind="deploy", status=JobStatus.SUCCEEDED, started_by="user:alice")
    services.move_deployed_pointer(
        first.pk, action="rollback", started_by="user:alice", reason="", job_id=rollback.pk
    )
    rolled_back_at = started + timedelta(minutes=1 if rolled_back_during_training else -1)
    Deployment.objects.filter(action="rollback").update(created_at=rolled_back_at)
    version = _candidate(tiny_loop, number=3, parent=second, train_job=train)
    job = JobFactory(kind="evaluate", scope=tiny_loop.job_scope, params={"version_id": version.pk})

    assert run_job(job.pk, "w1", evaluation.run_evaluation) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.result["gate_passed"] is True
    follow_up = job.result["follow_up"]
    if not rolled_back_during_training:
        assert follow_up["started"] is True
        return
    assert follow_up == {
        "what": "deploy v3",
        "started": False,
        "reason": f"deploy v3: v1 was rolled back to at {timezone.localtime(rolled_back_at):%H:%M} "
        "by alice",
        "will_retry": False,
    }
    assert not Job.objects.filter(kind="deploy", status="queued").exists()
    assert "Deploy it from its page when ready" in job.log
    assert services.skipped_follow_up(version) == follow_up  # the page offers the Deploy button
