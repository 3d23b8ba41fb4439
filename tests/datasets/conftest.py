import io
import json
import zipfile

import pytest
from django.core.files.base import ContentFile

from tests.factories import DatasetFactory


@pytest.fixture(params=["local", "s3"])
def storage_kind(request):
    """Runs a test once on local files and once on the S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3_storage")
    return request.param


@pytest.fixture
def s3_names(request):
    """Keys in the test's bucket, read with boto3 directly (not through django-storages)."""

    def names():
        client, bucket = request.getfixturevalue("s3_storage")
        return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]

    return names


@pytest.fixture
def stored_names():
    """Every file name in default storage (walks local dirs or lists the bucket)."""
    from django.core.files.storage import default_storage

    def walk(path=""):
        directories, files = default_storage.listdir(path)
        names = [f"{path}/{name}".lstrip("/") for name in files]
        for directory in directories:
            names.extend(walk(f"{path}/{directory}".lstrip("/")))
        return sorted(names)

    return walk


@pytest.fixture
def dataset(db, admin_user):
    return DatasetFactory(name="site-a", created_by=admin_user)


def zip_bytes(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def coco_json(images: list[tuple[str, int, int]], boxes: list[tuple[int, str, list]], classes):
    """images: (file_name, width, height); boxes: (image index, class, [x, y, w, h])."""
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    ids = {name: i + 1 for i, name in enumerate(classes)}
    return json.dumps(
        {
            "images": [
                {"id": i + 1, "file_name": n, "width": w, "height": h}
                for i, (n, w, h) in enumerate(images)
            ],
            "annotations": [
                {"id": k + 1, "image_id": i + 1, "category_id": ids[c], "bbox": bbox}
                for k, (i, c, bbox) in enumerate(boxes)
            ],
            "categories": categories,
        }
    ).encode()


@pytest.fixture
def run_upload(admin_user, monkeypatch, settings):
    """Stages files as an upload and runs the import job in this process (no Celery).

    The test's transaction holds the connection: the runner must not close it, and its
    heartbeat thread (another connection) must not wait on the test's write lock.
    """
    from apps.datasets import services
    from apps.datasets.importing import run_import_job
    from apps.jobs import runner
    from apps.jobs.runner import run_job

    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    settings.WORKER_HEARTBEAT_INTERVAL_S = 3600

    def upload(dataset, files: list[tuple[str, bytes]], user=None, **options):
        job = services.start_import(
            dataset,
            [(name, ContentFile(data, name=name)) for name, data in files],
            user=user or admin_user,
            **options,
        )
        run_job(job.pk, "test-worker", run_import_job)
        job.refresh_from_db()
        return job

    return upload


def report_line(job, file: str) -> dict:
    lines = [line for line in job.result["report"] if line["file"] == file]
    assert lines, f"{file} not in the report: {job.result.get('report')}"
    return lines[0]
