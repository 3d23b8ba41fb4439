"""The three ways to give a loop its initial model: upload, object storage, training (elsewhere)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.loops import services
from apps.loops.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def trained_archive(tmp_path_factory):
    """A tiny FPN archive for the dataset's classes, as a user would upload it."""
    from worker.ml.fpn import FPNModel
    from worker.ml.synthetic import generate_samples

    model = FPNModel(
        input_size=64, backbone_width=4, fpn_channels=16, batch_size=4, max_iteration=2, seed=1
    )
    model.train(generate_samples(4, "initial", seed=5, image_size=64))
    return model.save(tmp_path_factory.mktemp("archive") / "model.zip")


def test_an_uploaded_archive_becomes_a_verified_candidate(tiny_loop, trained_archive):
    with open(trained_archive, "rb") as handle:
        upload = SimpleUploadedFile("model.zip", handle.read())
    version = services.add_uploaded_version(tiny_loop, upload)
    assert (version.number, version.source, version.stage) == (1, "uploaded", "candidate")
    assert version.class_names == ["helmet", "vest", "cone"]
    with version.artifact.open("rb") as stored:
        import hashlib

        assert hashlib.sha256(stored.read()).hexdigest() == version.artifact_sha256


def test_an_archive_for_other_classes_is_refused(synthetic_dataset, trained_archive):
    from apps.datasets.services import create_dataset

    other = create_dataset(name="cars", class_names=["car", "truck"])
    loop = services.create_loop(name="cars", dataset=other)
    with open(trained_archive, "rb") as handle, pytest.raises(services.LoopError, match="predicts"):
        services.add_uploaded_version(loop, SimpleUploadedFile("m.zip", handle.read()))
    assert not ModelVersion.objects.exists()


def test_import_from_object_storage_by_s3_url(tiny_loop, trained_archive, s3_storage, settings):
    client, bucket = s3_storage
    client.upload_file(str(trained_archive), bucket, "initial/fpn.zip")
    endpoint = client.meta.endpoint_url
    settings.S3_ENDPOINT_URL, settings.S3_ACCESS_KEY_ID = endpoint, "test"
    settings.S3_SECRET_ACCESS_KEY, settings.S3_REGION = "test", "us-east-1"

    version = services.import_version_from_object_storage(
        tiny_loop, f"s3://{bucket}/initial/fpn.zip"
    )
    assert version.source == "imported" and version.source_uri == f"s3://{bucket}/initial/fpn.zip"
    assert client.head_object(Bucket=bucket, Key=version.artifact.name)["ContentLength"] > 0


@pytest.mark.parametrize(
    "uri, message",
    [("http://example/model.zip", "s3://bucket"), ("s3://bucket-only", "s3://bucket")],
)
def test_bad_object_storage_locations_are_refused(tiny_loop, uri, message):
    with pytest.raises(services.LoopError, match=message):
        services.import_version_from_object_storage(tiny_loop, uri)


def test_a_missing_object_is_a_clear_error(tiny_loop, s3_storage, settings):
    client, bucket = s3_storage
    settings.S3_ENDPOINT_URL = client.meta.endpoint_url
    settings.S3_ACCESS_KEY_ID = settings.S3_SECRET_ACCESS_KEY = "test"
    with pytest.raises(services.LoopError, match="Could not fetch"):
        services.import_version_from_object_storage(tiny_loop, f"s3://{bucket}/nothing.zip")
    assert not ModelVersion.objects.exists()
