"""Dataset pages: list, detail with counts, grid, filters, keyset pages, upload, export."""

import io
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.datasets.models import Sample
from apps.jobs.models import Job
from tests.datasets.conftest import zip_bytes
from tests.factories import DatasetFactory, image_bytes, make_sample


def sample_ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-sample-id="(\d+)"', response.content.decode())]


def test_the_list_shows_datasets_with_sample_counts(client_for, viewer_user, dataset):
    make_sample(dataset, 1)
    make_sample(dataset, 2)
    response = client_for(viewer_user).get(reverse("datasets:list"))
    assert response.status_code == 200
    assert b"site-a" in response.content
    assert re.search(rb'data-field="sample-count">2<', response.content)
    assert b"New dataset" not in response.content  # viewers cannot create


def test_an_admin_creates_a_dataset_from_the_list(client_for, admin_user):
    response = client_for(admin_user).post(
        reverse("datasets:list"), {"name": "depot", "class_names": "helmet, vest"}
    )
    dataset = Sample._meta.apps.get_model("datasets", "Dataset").objects.get(name="depot")
    assert response.status_code == 302 and dataset.class_names == ["helmet", "vest"]
    again = client_for(admin_user).post(reverse("datasets:list"), {"name": "depot"})
    assert b"already exists" in again.content


def test_the_detail_page_shows_counts_boxes_and_filters(client_for, viewer_user, dataset):
    labeled = make_sample(dataset, 1, boxes=[("vest", 2, 3, 12, 13)], split="train")
    make_sample(dataset, 2, split="test", source="device")
    response = client_for(viewer_user).get(reverse("datasets:detail", args=[dataset.pk]))
    html = response.content.decode()
    assert sample_ids(response) == [labeled.pk + 1, labeled.pk]
    assert (
        '<rect class="c1" x="2.000000" y="3.000000" width="10.000000" height="10.000000">' in html
    )
    assert re.search(r"<td>labeled</td><td>1</td>", html)
    assert re.search(r"<td>test</td><td>1</td>", html)
    assert re.search(r"</span>vest</td><td>1</td>", html)
    filtered = client_for(viewer_user).get(
        reverse("datasets:detail", args=[dataset.pk]), {"source": "device"}
    )
    assert sample_ids(filtered) == [labeled.pk + 1]
    by_class = client_for(viewer_user).get(
        reverse("datasets:detail", args=[dataset.pk]), {"class": "vest"}
    )
    assert sample_ids(by_class) == [labeled.pk]


def test_keyset_pages_walk_forward_and_back(client_for, viewer_user, dataset, settings):
    settings.DATASET_PAGE_SIZE = 2
    ids = [make_sample(dataset, seed).pk for seed in range(5)][::-1]  # newest first
    client = client_for(viewer_user)
    url = reverse("datasets:detail", args=[dataset.pk])
    first = client.get(url)
    assert sample_ids(first) == ids[:2]
    assert b"newer" not in first.content
    second = client.get(url, {"after": ids[1]})
    assert sample_ids(second) == ids[2:4]
    third = client.get(url, {"after": ids[3]})
    assert sample_ids(third) == ids[4:]
    assert b"older" not in third.content
    back = client.get(url, {"before": ids[4]})
    assert sample_ids(back) == ids[2:4]
    assert sample_ids(client.get(url, {"before": ids[2]})) == ids[:2]


def _detail_queries(client, dataset, **query) -> int:
    """Queries of a view after the first (which counts the dataset once, see datasets.counts)."""
    client.get(reverse("datasets:detail", args=[dataset.pk]), query)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("datasets:detail", args=[dataset.pk]), query)
    assert response.status_code == 200
    return len(captured)


def test_the_detail_page_query_count_does_not_grow_with_page_or_dataset(
    client_for, viewer_user, settings
):
    settings.DATASET_PAGE_SIZE = 3
    client = client_for(viewer_user)
    small = DatasetFactory()  # one sample on its page, against full pages below: N+1 would show
    make_sample(small, 0, boxes=[("helmet", 1, 1, 5, 5)])
    big = DatasetFactory()
    ids = [
        make_sample(big, 100 + seed, boxes=[("cone", 1, 1, 5, 5), ("vest", 2, 2, 9, 9)]).pk
        for seed in range(30)
    ]
    baseline = _detail_queries(client, small)
    assert _detail_queries(client, big) == baseline
    assert _detail_queries(client, big, after=ids[20]) == baseline
    assert _detail_queries(client, big, before=ids[5]) == baseline
    assert _detail_queries(client, big, after=ids[20], **{"class": "cone"}) == baseline


def test_the_thumbnail_is_served_and_made_once(client_for, viewer_user, dataset):
    sample = make_sample(dataset, 1, size=(600, 300))
    client = client_for(viewer_user)
    response = client.get(reverse("datasets:thumbnail", args=[sample.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    sample.refresh_from_db()
    name = sample.thumbnail.name
    assert name
    client.get(reverse("datasets:thumbnail", args=[sample.pk]))
    sample.refresh_from_db()
    assert sample.thumbnail.name == name


def test_the_upload_page_stages_files_and_queues_an_import_job(
    client_for, labeler_user, dataset, django_capture_on_commit_callbacks, monkeypatch
):
    from apps.jobs import services as job_services

    sent = []
    monkeypatch.setattr(job_services, "_enqueue", lambda *args: sent.append(args))
    client = client_for(labeler_user)
    assert client.get(reverse("datasets:upload", args=[dataset.pk])).status_code == 200
    archive = io.BytesIO(zip_bytes({"a.png": image_bytes(1)}))
    archive.name = "a.zip"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("datasets:upload", args=[dataset.pk]),
            {"files": [archive], "format": "auto", "unknown_classes": "reject"},
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 200, response.content
    job = Job.objects.get()
    assert response.json()["url"] == reverse("datasets:import", args=[job.pk])
    assert job.kind == "dataset_import" and job.params["dataset_id"] == dataset.pk
    assert sent == [(job.pk, "ilportal.dataset_import", "default")]
    page = client.get(reverse("datasets:import", args=[job.pk]))
    assert b'data-job-id="%d"' % job.pk in page.content


def test_an_upload_over_the_size_limit_is_refused_with_a_message(
    client_for, labeler_user, dataset, settings
):
    settings.DATASET_MAX_UPLOAD_BYTES = 10
    upload = io.BytesIO(image_bytes(1))
    upload.name = "a.png"
    response = client_for(labeler_user).post(
        reverse("datasets:upload", args=[dataset.pk]),
        {"files": [upload], "format": "auto", "unknown_classes": "reject"},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 400
    assert "more than the limit" in response.json()["errors"][0]
    assert Job.objects.count() == 0


@pytest.mark.parametrize(
    "role, method, name, expected",
    [
        ("viewer", "get", "upload", 403),
        ("viewer", "post", "delete", 403),
        ("labeler", "post", "delete", 403),
        ("labeler", "get", "upload", 200),
        ("admin", "post", "delete", 302),
    ],
)
def test_page_permissions(client_for, role, method, name, expected, dataset, request):
    user = request.getfixturevalue(f"{role}_user")
    data = {"confirmed": "yes"} if method == "post" else {}
    response = getattr(client_for(user), method)(
        reverse(f"datasets:{name}", args=[dataset.pk]), data
    )
    assert response.status_code == expected


def test_without_javascript_the_upload_redirects_to_the_import_page(
    client_for, labeler_user, dataset, monkeypatch
):
    from apps.jobs import services as job_services

    monkeypatch.setattr(job_services, "_enqueue", lambda *args: None)
    upload = io.BytesIO(image_bytes(1))
    upload.name = "a.png"
    response = client_for(labeler_user).post(
        reverse("datasets:upload", args=[dataset.pk]),
        {"files": [upload], "format": "auto", "unknown_classes": "reject"},
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("datasets:import", args=[job.pk])


def test_an_upload_without_files_shows_a_form_error(client_for, labeler_user, dataset):
    response = client_for(labeler_user).post(
        reverse("datasets:upload", args=[dataset.pk]), {"format": "auto"}
    )
    assert response.status_code == 200
    assert b"This field is required" in response.content
    assert Job.objects.count() == 0
