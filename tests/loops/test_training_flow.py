"""Train → evaluate → gate → deploy, run in this process through the job runner (no broker)."""

import pytest

from apps.datasets.services import labeled_snapshot
from apps.jobs import services as jobs
from apps.jobs.models import Job, JobStatus
from apps.jobs.runner import run_job
from apps.loops import services
from apps.loops.deployment import run_deploy
from apps.loops.evaluation import run_evaluation
from apps.loops.models import Deployment, ModelVersion, Stage
from apps.loops.training import run_training

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


def run(job: Job, body) -> Job:
    assert run_job(job.pk, "test-worker", body) is not None
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, (job.message, job.log)
    return job


def test_train_registers_a_candidate_with_its_lineage_and_artifacts(tiny_loop, admin_user):
    job = run(services.start_training(tiny_loop, user=admin_user), run_training)
    version = ModelVersion.objects.get()
    assert job.result["version"] == "v1" and version.stage == Stage.CANDIDATE
    assert version.train_job_id == job.pk and version.parent is None
    labeled_train = labeled_snapshot(tiny_loop.dataset_id, split="train")
    assert len(labeled_train) == 16 and version.new_samples == 16
    assert services.trained_pairs(version.pk) == labeled_train
    assert version.artifact.name.endswith("-model.zip") and len(version.artifact_sha256) == 64
    assert version.litert.name.endswith(".tflite")
    assert job.chart and job.chart[-1]["step"] == 6
    assert all(point["loss"] > 0 for point in job.chart)


def test_a_first_training_takes_initial_night_augment_and_says_so(
    tiny_loop, admin_user, night_shares_seen
):
    tiny_loop.algorithm_yaml = tiny_loop.algorithm_yaml.replace(
        "    seed: 3\n", "    seed: 3\n    initial_night_augment: 0.4\n"
    )
    tiny_loop.save(update_fields=["algorithm_yaml"])
    job = run(services.start_training(tiny_loop, user=admin_user), run_training)
    assert night_shares_seen == [0.4]
    assert "from scratch" in job.log and "40% of the images with the night-mode look" in job.log


def test_unchanged_data_is_not_trained_twice(tiny_loop, admin_user):
    run(services.start_training(tiny_loop, user=admin_user), run_training)
    second = run(services.start_training(tiny_loop, user=admin_user), run_training)
    assert second.result["skipped"] is True
    assert "unchanged since v1" in second.result["reason"]
    assert ModelVersion.objects.count() == 1


def test_evaluate_gate_and_deploy_then_a_failing_version_stays_candidate_then_rollback(
    tiny_loop, admin_user
):
    from tests.loops.conftest import add_synthetic_samples

    run(services.start_training(tiny_loop, user=admin_user), run_training)
    v1 = ModelVersion.objects.get()
    evaluation = run(services.start_evaluation(v1, user=admin_user), run_evaluation)
    v1.refresh_from_db()
    assert v1.gate_passed is True and evaluation.result["baseline"] is None
    assert {e.evaluation_set for e in v1.evaluations.all()} == {"edge", "regression"}
    edge = v1.evaluations.get(evaluation_set="edge")
    assert edge.image_count == 6 and set(edge.metrics["per_class"]) == {"helmet", "vest", "cone"}
    assert v1.gate_reasons[0] == {"passed": True, "text": "Judged on 6 images of the edge set"}

    run(services.start_deploy(v1, user=admin_user), run_deploy)
    tiny_loop.refresh_from_db()
    assert tiny_loop.deployed_version == v1

    # A second version that must gain 0.5 F1 on the edge set cannot pass.
    tiny_loop.gate_min_gain = {"f1": 0.5}
    tiny_loop.save()
    add_synthetic_samples(
        tiny_loop.dataset, 4, domain="edge", split="train", source="device", seed=9
    )
    run(services.start_training(tiny_loop, user=admin_user), run_training)
    v2 = ModelVersion.objects.get(number=2)
    assert v2.parent == v1 and v2.new_samples == 4 and v2.replay_samples == 16
    run(services.start_evaluation(v2, user=admin_user), run_evaluation)
    v2.refresh_from_db()
    regression = v2.evaluations.get(evaluation_set="regression")
    assert regression.baseline == v1
    assert regression.map_change == pytest.approx(
        regression.metrics["mAP"] - regression.baseline_metrics["mAP"]
    )
    assert v2.gate_passed is False and v2.stage == Stage.CANDIDATE
    failure = services.version_failures(v2)
    assert len(failure) == 1 and failure[0].startswith("Δf1 ") and "< +0.500" in failure[0]
    with pytest.raises(services.LoopError, match="has not passed its gate: Δf1"):
        services.start_deploy(v2, user=admin_user)

    # Forced deploy with a reason, then one-click rollback to v1.
    run(services.start_deploy(v2, user=admin_user, action="force", reason="hotfix"), run_deploy)
    run(services.start_deploy(v1, user=admin_user, action="rollback"), run_deploy)
    tiny_loop.refresh_from_db()
    assert tiny_loop.deployed_version == v1
    history = list(Deployment.objects.order_by("id").values_list("action", "version__number"))
    assert history == [("deploy", 1), ("force", 2), ("rollback", 1)]
    assert Deployment.objects.get(action="force").reason == "hotfix"
    v2.refresh_from_db()
    assert v2.stage == Stage.ARCHIVED
    with pytest.raises(services.LoopError, match="is or was deployed"):
        services.delete_version(v2.pk)


def test_a_corrupt_artifact_fails_the_smoke_test_and_nothing_is_deployed(tiny_loop, admin_user):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    run(services.start_training(tiny_loop, user=admin_user), run_training)
    version = ModelVersion.objects.get()
    version.gate_passed = True
    version.save()
    # Replace the stored archive with garbage whose sha256 we also record (a bad build).
    import hashlib

    garbage = b"PK\x03\x04 not really a zip"
    default_storage.delete(version.artifact.name)
    default_storage.save(version.artifact.name, ContentFile(garbage))
    ModelVersion.objects.filter(pk=version.pk).update(
        artifact_sha256=hashlib.sha256(garbage).hexdigest()
    )
    job = services.start_deploy(ModelVersion.objects.get(pk=version.pk), user=admin_user)
    assert run_job(job.pk, "test-worker", run_deploy) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.message.startswith("SmokeTestFailed: Smoke test failed")
    tiny_loop.refresh_from_db()
    assert tiny_loop.deployed_version is None and not Deployment.objects.exists()
