"""An upload imported by a real Celery worker process (the live portal), no browser."""

import time

from django.core.files.base import ContentFile

from apps.datasets import services
from apps.datasets.models import Sample
from tests.datasets.conftest import coco_json, zip_bytes
from tests.factories import DatasetFactory, UserFactory, image_bytes


def test_a_worker_imports_an_upload_and_reports_every_file(live_portal):
    labeler = UserFactory(role="labeler")
    dataset = DatasetFactory(name="e2e")
    archive = zip_bytes(
        {
            "images/a.png": image_bytes(1),
            "images/b.png": image_bytes(2),
            "images/bad.png": b"nope",
            "annotations.json": coco_json(
                [("images/a.png", 64, 48)], [(0, "vest", [1, 1, 9, 9])], ["vest"]
            ),
        }
    )
    job = services.start_import(
        dataset, [("e2e.zip", ContentFile(archive, name="e2e.zip"))], user=labeler
    )
    for _ in range(300):
        job.refresh_from_db()
        if not job.is_active:
            break
        time.sleep(0.2)
    assert job.status == "succeeded", live_portal.read_logs()
    assert job.result["counts"] == {
        "accepted": 2, "duplicate": 0, "rejected": 1, "warning": 0, "ignored": 0, "read": 1
    }  # fmt: skip
    assert job.worker.startswith("test-")
    assert "rejected: images/bad.png: not an image" in job.log
    assert Sample.objects.filter(dataset=dataset, status="labeled").count() == 1
    assert (live_portal.media_root / Sample.objects.first().image.name).exists()
