"""The same upload, thumbnail, export and delete paths on local files and on a real S3 API."""

import hashlib
import io
import threading
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.db import connection

from apps.datasets import services
from apps.datasets.exporting import write_export
from apps.datasets.image_checks import check_image
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


def _race(count, work):
    """Runs `work(i)` in `count` threads at once; returns their results (or exceptions)."""
    results = [None] * count

    def run(i):
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def writers_check_names_together(monkeypatch):
    """Once called: every writer of two has chosen its name (S3: exists() before the PUT) before
    either writes: the moment two writers of the same bytes would get the same content-addressed
    key. Called after the test's own setup, whose writes must not wait."""

    def arm():
        barrier = threading.Barrier(2, timeout=20)
        waited = set()
        storage_class = default_storage.__class__
        choose = storage_class.get_available_name

        def get_available_name(self, name, max_length=None):
            chosen = choose(self, name, max_length=max_length)
            if threading.get_ident() not in waited:  # a later choice (local: a retry) goes on
                waited.add(threading.get_ident())
                barrier.wait()
            return chosen

        monkeypatch.setattr(storage_class, "get_available_name", get_available_name)

    return arm


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["upload", "import"])
def test_two_writers_of_the_same_image_at_once_keep_the_winners_file(
    storage_kind, dataset, stored_names, writers_check_names_together, path
):
    """A device's upload sent twice to two web processes (store_sample writes the file), or two
    imports of the same zip (write_image_file first, then store_sample owns `stored_name`): one
    sample, and its image is still in storage (the loser removed only its own file)."""
    data = image_bytes(7, (64, 48))

    def store(i):
        if path == "upload":
            return services.store_sample(dataset, data, original_name=f"{i}.png", source="upload")
        info = check_image(data)
        sha256 = hashlib.sha256(data).hexdigest()
        name = services.write_image_file(dataset.pk, sha256, info, data)
        return services.store_sample(
            dataset, data, original_name=f"{i}.png", source="upload", image_info=info,
            sha256=sha256, stored_name=name,
        )  # fmt: skip

    writers_check_names_together()
    results = _race(2, store)
    assert all(isinstance(r, services.StoredSample) for r in results), results
    assert sorted(r.created for r in results) == [False, True]
    sample = Sample.objects.get(dataset=dataset)
    assert {r.sample.pk for r in results} == {sample.pk}
    assert stored_names() == [sample.image.name]  # the winner's file, and no orphan
    with default_storage.open(sample.image.name, "rb") as handle:
        assert handle.read() == data


@pytest.mark.django_db(transaction=True)
def test_two_first_thumbnail_requests_at_once_keep_the_recorded_thumbnail(
    storage_kind, dataset, stored_names, writers_check_names_together
):
    stored = services.store_sample(
        dataset, image_bytes(8, (64, 48)), original_name="a.png", source="upload"
    )
    pk = stored.sample.pk
    writers_check_names_together()
    results = _race(2, lambda i: ensure_thumbnail(Sample.objects.get(pk=pk)))
    sample = Sample.objects.get(pk=pk)
    assert results == [sample.thumbnail.name] * 2, results
    assert stored_names() == sorted([sample.image.name, sample.thumbnail.name])
    with default_storage.open(sample.thumbnail.name, "rb") as handle:
        assert handle.read()[:2] == b"\xff\xd8"  # a JPEG
