"""A version's training data cannot be deleted from under it."""

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from apps.datasets.models import Sample
from apps.jobs import services as jobs
from apps.jobs.runner import run_job
from apps.loops import services
from apps.loops.models import ModelVersion, TrainedSample
from apps.loops.training import run_training

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    monkeypatch.setattr(jobs, "_enqueue", lambda *args: None)


@pytest.fixture
def trained_v1(tiny_loop, admin_user):
    job = services.start_training(tiny_loop, user=admin_user)
    run_job(job.pk, "test-worker", run_training)
    return ModelVersion.objects.get()


def test_a_sample_a_version_was_trained_on_cannot_be_deleted(trained_v1, client_for, admin_user):
    pairs = services.trained_pairs(trained_v1.pk)
    assert set(TrainedSample.objects.values_list("sample_id", "annotation_id")) == set(pairs)
    trained_on = Sample.objects.get(pk=pairs[0][0])
    client = client_for(admin_user)

    response = client.delete(reverse("api-sample", args=[trained_on.pk]))

    assert response.status_code == 409
    assert "v1" in response.json()["detail"] and "skipped" in response.json()["detail"]
    trained_on.refresh_from_db()  # still there, with its annotation and its file
    assert trained_on.current_annotation_id == pairs[0][1]
    assert default_storage.exists(trained_on.image.name)

    # A sample outside every snapshot (the edge evaluation set) deletes as before.
    evaluation_only = Sample.objects.filter(split="eval").first()
    assert client.delete(reverse("api-sample", args=[evaluation_only.pk])).status_code == 204

    # Once the versions trained on it are gone, so may the sample go.
    services.delete_version(trained_v1.pk)
    assert not TrainedSample.objects.exists()
    assert client.delete(reverse("api-sample", args=[trained_on.pk])).status_code == 204


def test_a_version_whose_snapshot_lost_a_sample_is_not_registered(trained_v1, tiny_loop, tmp_path):
    """A sample deleted while training ran: the new version would lack its lineage."""
    snapshot = [list(pair) for pair in services.trained_pairs(trained_v1.pk)]
    archive = tmp_path / "model.zip"
    archive.write_bytes(trained_v1.artifact.read())
    services.delete_version(trained_v1.pk)
    Sample.objects.filter(pk=snapshot[0][0]).delete()
    stored_before = set(default_storage.listdir(f"models/loop-{tiny_loop.pk}")[1])

    with pytest.raises(services.LoopError, match="deleted while it trained"):
        services.register_version(
            tiny_loop, str(archive), source="trained", snapshot=snapshot, snapshot_sha256="x" * 64
        )

    assert not ModelVersion.objects.exists()
    assert set(default_storage.listdir(f"models/loop-{tiny_loop.pk}")[1]) <= stored_before
