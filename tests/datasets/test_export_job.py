"""Export as a job: started from the dataset page or the API, progress, a checked download."""

import io
import threading
import time
import zipfile

import pytest
from django.urls import reverse

from apps.datasets import exporting
from apps.jobs.models import Job
from tests.factories import UserFactory, make_sample


@pytest.fixture
def run_jobs_inline(monkeypatch, settings):
    """The job a view or the API queues runs in this process when it is enqueued."""
    from apps.jobs import runner, services

    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    settings.WORKER_HEARTBEAT_INTERVAL_S = 3600

    def run(job_id, task_name, queue):
        assert task_name == "ilportal.dataset_export" and queue == "default"
        runner.run_job(job_id, "test-worker", exporting.run_export_job)

    monkeypatch.setattr(services, "_enqueue", run)


def fill(dataset):
    make_sample(dataset, 1, boxes=[("helmet", 1, 1, 5, 5)], split="train")
    make_sample(dataset, 2, split="eval")


def zip_names(response) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        return archive.namelist()


def test_the_dataset_page_starts_an_export_job_with_a_download_link(
    client_for, viewer_user, dataset, run_jobs_inline, django_capture_on_commit_callbacks
):
    fill(dataset)
    client = client_for(viewer_user)
    page = client.get(reverse("datasets:detail", args=[dataset.pk])).content.decode()
    assert 'data-testid="export-form"' in page and 'method="post"' in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("datasets:export", args=[dataset.pk]), {"format": "yolo", "split": "train"}
        )
    job = Job.objects.get(kind="dataset_export")
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:export-detail", args=[job.pk])
    assert job.status == "succeeded", job.log
    assert job.progress == 100 and job.result["images"] == 1
    detail = client.get(response["Location"]).content.decode()
    download_url = reverse("datasets:export-download", args=[job.pk])
    assert download_url in detail

    download = client.get(download_url)
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith('attachment; filename="site-a-yolo.zip"')
    names = zip_names(download)
    assert {"data.yaml", "obj.names", "classes.txt"} <= set(names)
    assert len([n for n in names if n.startswith("images/train/")]) == 1
    assert not any(n.startswith("images/val/") for n in names)


def test_the_export_view_no_longer_builds_the_zip_in_the_request(client_for, viewer_user, dataset):
    response = client_for(viewer_user).get(reverse("datasets:export", args=[dataset.pk]))
    assert response.status_code == 405


def test_an_unknown_format_is_refused_with_a_message(client_for, viewer_user, dataset):
    response = client_for(viewer_user).post(
        reverse("datasets:export", args=[dataset.pk]), {"format": "csv"}, follow=True
    )
    assert b"Unknown export format" in response.content
    assert not Job.objects.filter(kind="dataset_export").exists()


def test_the_download_checks_the_permission(
    client, client_for, admin_user, dataset, run_jobs_inline, django_capture_on_commit_callbacks
):
    fill(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        exporting.start_export(dataset, "coco", {}, user=admin_user)
    job = Job.objects.get(kind="dataset_export")
    url = reverse("datasets:export-download", args=[job.pk])
    assert client.get(url).status_code in (302, 401, 403)
    assert client_for(UserFactory(username="no-role")).get(url).status_code == 403
    assert (
        client_for(UserFactory(username="role-less-2"))
        .get(reverse("datasets:export-detail", args=[job.pk]))
        .status_code
        == 403
    )


def test_a_download_before_the_job_succeeded_is_404(client_for, viewer_user, dataset, monkeypatch):
    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    job = exporting.start_export(dataset, "voc", {}, user=viewer_user)
    response = client_for(viewer_user).get(reverse("datasets:export-download", args=[job.pk]))
    assert response.status_code == 404


def test_the_api_starts_an_export_and_serves_the_result(
    client_for, viewer_user, dataset, run_jobs_inline, django_capture_on_commit_callbacks
):
    fill(dataset)
    client = client_for(viewer_user)
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"/api/v1/datasets/{dataset.pk}/exports/",
            {"format": "coco", "status": "labeled"},
            content_type="application/json",
        )
    assert started.status_code == 202, started.content
    body = started.json()
    assert body["job"]["kind"] == "dataset_export"
    state = client.get(body["url"]).json()
    assert state["job"]["status"] == "succeeded"
    download = client.get(state["download_url"])
    assert download.status_code == 200
    names = zip_names(download)
    assert "annotations/instances_train.json" in names
    assert len([n for n in names if n.endswith(".png")]) == 1  # only the labeled sample


@pytest.mark.parametrize(
    "body",
    [{"format": "csv"}, {"format": "coco", "split": "nowhere"}, {"format": ["coco"]}],
)
def test_the_api_refuses_bad_export_requests(client_for, viewer_user, dataset, body):
    response = client_for(viewer_user).post(
        f"/api/v1/datasets/{dataset.pk}/exports/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert not Job.objects.filter(kind="dataset_export").exists()


def test_the_api_answers_404_for_the_file_of_an_unfinished_export(
    client_for, viewer_user, dataset, monkeypatch
):
    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    job = exporting.start_export(dataset, "coco", {}, user=viewer_user)
    client = client_for(viewer_user)
    assert client.get(f"/api/v1/exports/{job.pk}/").json()["download_url"] is None
    assert client.get(f"/api/v1/exports/{job.pk}/download/").status_code == 404


def test_images_are_read_from_storage_in_parallel(dataset, monkeypatch, settings):
    """Object stores answer slowly, not busily: reads overlap, as the importer's writes do."""
    for seed in range(16):
        make_sample(dataset, seed, boxes=[("helmet", 1, 1, 5, 5)])
    settings.DATASET_EXPORT_READERS = 8
    real_read = exporting._read_image
    active, most = [0], [0]
    lock = threading.Lock()

    def slow_read(name):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.05)
        try:
            return real_read(name)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(exporting, "_read_image", slow_read)
    out = io.BytesIO()
    assert exporting.write_export(dataset, dataset.samples.all(), "coco", out) == 16
    assert most[0] > 1


def test_progress_is_reported_while_the_zip_is_written(dataset, monkeypatch):
    for seed in range(5):
        make_sample(dataset, seed)
    monkeypatch.setattr(exporting, "BATCH", 2)
    seen = []
    exporting.write_export(
        dataset,
        dataset.samples.all(),
        "voc",
        io.BytesIO(),
        on_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[0] == (2, 5) and seen[-1] == (5, 5)


def test_a_cancelled_export_leaves_no_file(
    dataset, admin_user, monkeypatch, settings, stored_names
):
    from apps.jobs import runner
    from apps.jobs import services as job_services

    for seed in range(5):
        make_sample(dataset, seed)
    before = set(stored_names())
    monkeypatch.setattr(runner, "close_old_connections", lambda: None)
    monkeypatch.setattr(job_services, "_enqueue", lambda *args: None)
    settings.WORKER_HEARTBEAT_INTERVAL_S = 3600
    monkeypatch.setattr(exporting, "BATCH", 2)
    job = exporting.start_export(dataset, "coco", {}, user=admin_user)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    runner.run_job(job.pk, "test-worker", exporting.run_export_job)
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert set(stored_names()) == before


def test_a_device_token_exports_only_datasets_of_its_loops(
    admin_user, dataset, monkeypatch, client
):
    from django.test import Client

    from apps.accounts.services import create_device_token

    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    issued = create_device_token(name="edge-cam", created_by=admin_user)
    device = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    url = f"/api/v1/datasets/{dataset.pk}/exports/"

    issued.device_token.all_loops = False
    issued.device_token.save()
    refused = device.post(url, {"format": "coco"}, content_type="application/json")
    assert refused.status_code == 403
    assert not Job.objects.filter(kind="dataset_export").exists()

    issued.device_token.all_loops = True
    issued.device_token.save()
    started = device.post(url, {"format": "coco"}, content_type="application/json")
    assert started.status_code == 202, started.content
    job = Job.objects.get(kind="dataset_export")
    assert job.started_by == "device:edge-cam" and job.created_by is None
    assert device.get(started.json()["url"]).status_code == 200


def test_the_same_export_asked_twice_while_it_runs_is_one_job(dataset, viewer_user, monkeypatch):
    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    first = exporting.start_export(dataset, "coco", {"split": "train"}, user=viewer_user)
    again = exporting.start_export(dataset, "coco", {"split": "train"}, user=viewer_user)
    other = exporting.start_export(dataset, "voc", {"split": "train"}, user=viewer_user)
    assert again.pk == first.pk and other.pk != first.pk


def test_the_api_download_answers_a_client_that_asks_for_a_zip(
    client_for, viewer_user, dataset, run_jobs_inline, django_capture_on_commit_callbacks
):
    fill(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        job = exporting.start_export(dataset, "coco", {}, user=viewer_user)
    client = client_for(viewer_user)
    url = f"/api/v1/exports/{job.pk}/download/"
    response = client.get(url, HTTP_ACCEPT="application/zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    missing = client.get("/api/v1/exports/999999/download/", HTTP_ACCEPT="application/zip")
    assert missing.status_code == 404


def test_old_export_zips_are_deleted_and_their_page_says_so(
    client_for,
    viewer_user,
    dataset,
    run_jobs_inline,
    django_capture_on_commit_callbacks,
    stored_names,
):
    from datetime import timedelta

    from django.utils import timezone

    fill(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        old = exporting.start_export(dataset, "coco", {}, user=viewer_user)
        recent = exporting.start_export(dataset, "voc", {}, user=viewer_user)
    Job.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(hours=73))
    assert exporting.export_storage_name(old.pk) in stored_names()

    assert exporting.expire_old_exports(keep_hours=72) == [old.pk]
    assert exporting.expire_old_exports(keep_hours=72) == []  # once
    names = stored_names()
    assert exporting.export_storage_name(old.pk) not in names
    assert exporting.export_storage_name(recent.pk) in names

    client = client_for(viewer_user)
    page = client.get(reverse("datasets:export-detail", args=[old.pk])).content.decode()
    assert 'data-testid="export-expired"' in page
    assert client.get(reverse("datasets:export-download", args=[old.pk])).status_code == 404
    assert client.get(f"/api/v1/exports/{old.pk}/").json()["download_url"] is None


def test_an_export_job_on_each_storage(
    storage_kind,
    client_for,
    viewer_user,
    dataset,
    run_jobs_inline,
    django_capture_on_commit_callbacks,
    stored_names,
):
    """Images are read from, and the zip written to, the configured storage (S3 included)."""
    fill(dataset)
    with django_capture_on_commit_callbacks(execute=True):
        job = exporting.start_export(dataset, "yolo_darknet", {}, user=viewer_user)
    job.refresh_from_db()
    assert job.status == "succeeded", job.log
    assert exporting.export_storage_name(job.pk) in stored_names()
    download = client_for(viewer_user).get(reverse("datasets:export-download", args=[job.pk]))
    names = zip_names(download)
    assert {"obj.data", "obj.names", "train.txt"} <= set(names)
    assert len([n for n in names if n.endswith(".png")]) == 2


@pytest.fixture
def export_finished_in_between(monkeypatch):
    """The active export's row is there for the INSERT, gone when start_job looks it up: the
    race of asking again just as the same export finishes."""
    monkeypatch.setattr("apps.jobs.services._enqueue", lambda *args: None)
    monkeypatch.setattr("apps.jobs.services.active_job", lambda kind, scope: None)


def test_the_api_answers_409_when_the_same_export_finished_in_between(
    client_for, viewer_user, dataset, export_finished_in_between
):
    url = f"/api/v1/datasets/{dataset.pk}/exports/"
    client = client_for(viewer_user)
    body = {"format": "voc", "split": "eval"}
    assert client.post(url, body, content_type="application/json").status_code == 202
    again = client.post(url, body, content_type="application/json")
    assert again.status_code == 409, again.content
    assert "just ran; try again" in again.json()["detail"]
    assert Job.objects.filter(kind="dataset_export").count() == 1


def test_the_page_says_so_when_the_same_export_finished_in_between(
    client_for, viewer_user, dataset, export_finished_in_between
):
    url = reverse("datasets:export", args=[dataset.pk])
    client = client_for(viewer_user)
    assert client.post(url, {"format": "voc"}).status_code == 302
    again = client.post(url, {"format": "voc"}, follow=True)
    assert again.status_code == 200
    assert "just ran; try again" in again.content.decode()
    assert Job.objects.filter(kind="dataset_export").count() == 1
