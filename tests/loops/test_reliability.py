import pytest
from django.conf import settings
from django.core.files.storage import default_storage

from apps.jobs import services as jobs
from apps.jobs.models import JobStatus
from apps.jobs.runner import run_job
from apps.loops import artifacts
from apps.loops.models import ModelVersion
from apps.loops.training import run_training


class FlakyStorage:
    """The real storage, except that save() fails the first `failures` times."""

    def __init__(self, failures=0):
        self.failures, self.calls = failures, 0

    def save(self, name, content, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("503 Slow Down")
        return default_storage.save(name, content, **kwargs)

    def __getattr__(self, name):
        return getattr(default_storage, name)


@pytest.fixture
def flaky_storage(monkeypatch):
    storage = FlakyStorage()
    monkeypatch.setattr(artifacts, "default_storage", storage)
    monkeypatch.setattr(artifacts, "STORE_FIRST_DELAY_S", 0.01)
    return storage


def test_a_failing_store_is_retried_with_backoff(tmp_path, flaky_storage):
    flaky_storage.failures = 2
    local = tmp_path / "model.zip"
    local.write_bytes(b"weights")
    stored = artifacts.store_file(str(local), "models/loop-1", "-model.zip")
    assert flaky_storage.calls == 3
    with default_storage.open(stored.name, "rb") as handle:
        assert handle.read() == b"weights"


def test_a_store_that_keeps_failing_is_a_clear_error(tmp_path, flaky_storage):
    flaky_storage.failures = 99
    local = tmp_path / "model.zip"
    local.write_bytes(b"weights")
    with pytest.raises(artifacts.ArtifactError, match="failed 4 times: 503 Slow Down"):
        artifacts.store_file(str(local), "models/loop-1", "-model.zip")


@pytest.mark.django_db(transaction=True)
def test_a_training_whose_storage_is_down_fails_and_registers_nothing(
    tiny_loop, admin_user, flaky_storage, monkeypatch
):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    job = jobs.start_job("train", user=admin_user, scope=tiny_loop.job_scope,
                         params={"loop_id": tiny_loop.pk})  # fmt: skip
    flaky_storage.failures = 10**6
    assert run_job(job.pk, "w", run_training) == JobStatus.FAILED
    job.refresh_from_db()
    assert "ArtifactError" in job.message and not ModelVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_training_stops_it_and_registers_nothing(tiny_loop, admin_user, monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)
    job = jobs.start_job("train", user=admin_user, scope=tiny_loop.job_scope,
                         params={"loop_id": tiny_loop.pk})  # fmt: skip

    def cancel_then_train(job, progress):
        jobs.cancel_job(job.pk, user=admin_user)
        return run_training(job, progress)

    assert run_job(job.pk, "w", cancel_then_train) == JobStatus.CANCELLED
    assert not ModelVersion.objects.exists()


def test_redis_never_redelivers_a_running_training():
    from worker.tasks.loops import train_version

    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert train_version.time_limit < visibility
    assert train_version.soft_time_limit < train_version.time_limit


@pytest.mark.django_db(transaction=True)
def test_an_evaluation_that_dies_half_way_leaves_none_of_its_metrics(tiny_loop, monkeypatch):
    """The edge set measured, then the regression set fails (or the worker is killed): the
    version keeps its earlier evaluation and gate, with no edge metrics of the dead job."""
    from apps.jobs.models import Job
    from apps.loops import evaluation
    from apps.loops.models import Evaluation

    version = ModelVersion.objects.create(
        loop=tiny_loop, number=1, source="uploaded", artifact="models/v1.zip",
        artifact_sha256="0" * 64, artifact_size=1, gate_passed=True, gate_reasons=[],
    )  # fmt: skip
    measured = []

    def measure_then_die(model, data):
        if measured:
            raise RuntimeError("killed while measuring the regression set")
        measured.append(data)
        return {"mAP": 0.1, "f1": 0.1, "precision": 0.1, "recall": 0.1, "per_class": {}}

    monkeypatch.setattr(evaluation.ml_models, "load_version", lambda version: object())
    monkeypatch.setattr(evaluation.ml_models, "measure", measure_then_die)
    monkeypatch.setattr(evaluation.ml_models, "discard", lambda model: None)
    job = Job.objects.create(
        kind="evaluate", scope=tiny_loop.job_scope, params={"version_id": version.pk}
    )

    assert run_job(job.pk, "w", evaluation.run_evaluation) == JobStatus.FAILED
    assert len(measured) == 1  # the edge set was measured
    assert not Evaluation.objects.filter(job=job).exists()
    version.refresh_from_db()
    assert version.gate_passed is True
