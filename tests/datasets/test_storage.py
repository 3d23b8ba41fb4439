"""The same upload, thumbnail, export and delete paths on local files and on a real S3 API."""

import io
import zipfile

from apps.datasets import services
from apps.datasets.exporting import write_export
from apps.datasets.models import Sample
from apps.datasets.thumbnails import ensure_thumbnail
from tests.datasets.conftest import coco_json, zip_bytes
from tests.factories import image_bytes


def test_upload_thumbnail_export_and_delete(
    storage_kind, dataset, run_upload, stored_names, django_capture_on_commit_callbacks, s3_names
):
    archive = zip_bytes(
        {
            "images/a.png": image_bytes(1, (640, 480)),
            "images/b.png": image_bytes(2),
            "annotations.json": coco_json(
                [("images/a.png", 640, 480)], [(0, "helmet", [10, 20, 100, 50])], ["helmet"]
            ),
        }
    )
    job = run_upload(dataset, [("site.zip", archive)])
    assert job.result["counts"]["accepted"] == 2, job.result
    a = Sample.objects.get(original_name="a.png")
    names = stored_names()
    # the staged zip is gone; the two images and the import's full report stay
    assert a.image.name in names and len(names) == 3
    assert f"reports/imports/{job.pk}.csv" in names
    assert a.image.read() == image_bytes(1, (640, 480))
    if storage_kind == "s3":
        assert sorted(s3_names()) == names  # really in the bucket

    name = ensure_thumbnail(a)
    assert name.endswith(".jpg") and name in stored_names()
    a.refresh_from_db()
    assert a.thumbnail.name == name
    assert ensure_thumbnail(a) == name  # made once
    from PIL import Image

    with Image.open(a.thumbnail.open("rb")) as thumbnail:
        assert max(thumbnail.size) == 256

    out = io.BytesIO()
    write_export(dataset, dataset.samples.all(), "coco", out)
    with zipfile.ZipFile(out) as exported:
        pngs = [n for n in exported.namelist() if n.endswith(".png")]
        assert len(pngs) == 2
        assert image_bytes(1, (640, 480)) in [exported.read(n) for n in pngs]

    with django_capture_on_commit_callbacks(execute=True):
        services.delete_dataset(dataset.pk)
    assert stored_names() == []
