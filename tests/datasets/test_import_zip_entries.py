"""What an upload holds: duplicate names in a zip, empty zips, empty files among good ones."""

import warnings

import pytest
from django.urls import reverse

from apps.datasets.models import Sample
from tests.datasets.conftest import report_line, zip_bytes
from tests.factories import image_bytes


def zip_with_duplicate_names() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns "Duplicate name", and writes it anyway
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("a.png", image_bytes(1))
            archive.writestr("a.png", image_bytes(2))
            archive.writestr("b.png", image_bytes(3))
    return buffer.getvalue()


def test_a_zip_with_two_entries_of_one_name_keeps_the_first_and_reports_the_second(
    dataset, run_upload
):
    job = run_upload(dataset, [("upload.zip", zip_with_duplicate_names())])
    assert job.status == "succeeded", job.log
    lines = [line for line in job.result["report"] if line["file"] == "a.png"]
    assert sorted(line["outcome"] for line in lines) == ["accepted", "rejected"], lines
    rejected = next(line for line in lines if line["outcome"] == "rejected")
    assert "same name" in rejected["message"] and "first" in rejected["message"]
    stored = Sample.objects.get(original_name="a.png")
    import hashlib

    assert stored.sha256 == hashlib.sha256(image_bytes(1)).hexdigest()  # the first, not the last
    assert Sample.objects.count() == 2


def test_an_empty_zip_is_an_error_with_a_message(dataset, run_upload):
    job = run_upload(dataset, [("nothing.zip", zip_bytes({}))])
    assert job.status == "failed", job.message
    assert "Nothing to import" in job.message and "nothing.zip" in job.message
    assert "empty" in job.message


def test_an_empty_zip_beside_good_files_is_reported_and_the_rest_kept(dataset, run_upload):
    job = run_upload(dataset, [("nothing.zip", zip_bytes({})), ("good.png", image_bytes(5))])
    assert job.status == "succeeded", job.log
    assert report_line(job, "nothing.zip")["outcome"] == "rejected"
    assert "empty" in report_line(job, "nothing.zip")["message"]
    assert report_line(job, "good.png")["outcome"] == "accepted"


def test_an_empty_file_in_a_zip_is_reported_by_name_and_the_good_files_kept(dataset, run_upload):
    archive = zip_bytes({"good.png": image_bytes(1), "empty.png": b"", "more.png": image_bytes(2)})
    job = run_upload(dataset, [("upload.zip", archive)])
    assert job.status == "succeeded", job.log
    line = report_line(job, "empty.png")
    assert line["outcome"] == "rejected" and "empty" in line["message"]
    assert Sample.objects.count() == 2


@pytest.fixture
def run_worker_jobs(monkeypatch, settings):
    """Runs a queued import in this process when the web view enqueues it."""
    from apps.datasets.importing import run_import_job
    from apps.jobs import runner, services

    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    settings.WORKER_HEARTBEAT_INTERVAL_S = 3600
    monkeypatch.setattr(
        services,
        "_enqueue",
        lambda job_id, task, queue: runner.run_job(job_id, "test-worker", run_import_job),
    )


def _upload_with_an_empty_file(client, url, field="files", **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [
        SimpleUploadedFile("good.png", image_bytes(1), "image/png"),
        SimpleUploadedFile("empty.png", b"", "image/png"),
        SimpleUploadedFile("other.png", image_bytes(2), "image/png"),
    ]
    return client.post(url, {field: files, **extra}, **{"HTTP_ACCEPT": "application/json"})


@pytest.mark.django_db(transaction=True)
def test_an_empty_file_among_good_ones_on_the_upload_page(client, admin_user, run_worker_jobs):
    from apps.jobs.models import Job
    from tests.factories import DatasetFactory

    dataset = DatasetFactory(name="pages")
    client.force_login(admin_user)
    response = _upload_with_an_empty_file(
        client,
        reverse("datasets:upload", args=[dataset.pk]),
        format="auto",
        unknown_classes="reject",
    )
    assert response.status_code == 200, response.content
    job = Job.objects.get(kind="dataset_import")
    assert job.status == "succeeded", job.log
    line = report_line(job, "empty.png")
    assert line["outcome"] == "rejected" and "empty" in line["message"]
    assert Sample.objects.filter(dataset=dataset).count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_empty_file_among_good_ones_in_the_api(client, admin_user, run_worker_jobs):
    from apps.jobs.models import Job
    from tests.factories import DatasetFactory

    dataset = DatasetFactory(name="api")
    client.force_login(admin_user)
    response = _upload_with_an_empty_file(client, f"/api/v1/datasets/{dataset.pk}/imports/")
    assert response.status_code == 202, response.content
    job = Job.objects.get(kind="dataset_import")
    assert report_line(job, "empty.png")["outcome"] == "rejected"
    assert Sample.objects.filter(dataset=dataset).count() == 2


def with_encrypted_flag(archive: bytes, name: str) -> bytes:
    """The zip with `name` marked encrypted (flag bit 0, as `zip -e` writes it)."""
    import io
    import zipfile

    raw = bytearray(archive)
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(name)
    raw[info.header_offset + 6] |= 1  # local header's flags
    central = raw.find(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(name)] != name.encode():
        central = raw.find(b"PK\x01\x02", central + 1)
    raw[central + 8] |= 1  # central directory entry's flags
    return bytes(raw)


@pytest.mark.parametrize(
    "secret, data",
    [("secret.png", image_bytes(2)), ("c.json", b'{"images": [], "annotations": []}')],
)
def test_an_encrypted_entry_is_rejected_by_name_and_the_good_files_kept(
    dataset, run_upload, secret, data
):
    archive = zip_bytes({"good.png": image_bytes(1), secret: data})
    job = run_upload(dataset, [("upload.zip", with_encrypted_flag(archive, secret))])
    assert job.status == "succeeded", job.log
    line = report_line(job, secret)
    assert line["outcome"] == "rejected" and "encrypted" in line["message"], line
    assert report_line(job, "good.png")["outcome"] == "accepted"
    assert Sample.objects.count() == 1


def test_entry_names_keep_their_leading_dots(dataset, run_upload):
    archive = zip_bytes(
        {"./a.png": image_bytes(1), ".hidden/h.png": image_bytes(2), "hidden/h.png": image_bytes(3)}
    )
    job = run_upload(dataset, [("upload.zip", archive)])
    assert job.status == "succeeded", job.log
    for name in ("a.png", ".hidden/h.png", "hidden/h.png"):  # "./" alone is dropped
        assert report_line(job, name)["outcome"] == "accepted"
    assert job.result["counts"]["rejected"] == 0
    assert Sample.objects.count() == 3
