"""REST API v1: datasets, samples, annotations; session and device-token auth; roles."""

import io
import json

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.services import create_device_token, revoke_device_token
from apps.datasets.models import Annotation, Dataset, Sample
from tests.factories import image_bytes, make_sample


@pytest.fixture
def device_client(admin_user):
    issued = create_device_token(name="edge-cam-1", created_by=admin_user, all_loops=True)
    client = Client(headers={"Authorization": f"Bearer {issued.raw_token}"})
    client.issued = issued
    return client


def png_upload(seed=1, name="cam.png"):
    upload = io.BytesIO(image_bytes(seed))
    upload.name = name
    return upload


def test_anonymous_requests_get_401(dataset):
    response = Client().get(reverse("api-datasets"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_session_user_lists_and_reads_datasets(client_for, viewer_user, dataset):
    make_sample(dataset, 1)
    client = client_for(viewer_user)
    listed = client.get(reverse("api-datasets")).json()
    assert [(d["name"], d["sample_count"]) for d in listed] == [("site-a", 1)]
    one = client.get(reverse("api-dataset", args=[dataset.pk])).json()
    assert one["class_names"] == ["helmet", "vest", "cone"]


def test_head_is_answered_wherever_get_is(client_for, viewer_user, dataset):
    client = client_for(viewer_user)
    for url in (reverse("api-datasets"), reverse("api-dataset", args=[dataset.pk])):
        got, head = client.get(url), client.head(url)
        assert (got.status_code, head.status_code) == (200, 200), (url, head.content)
        assert head.content == b"" and head["Content-Type"] == got["Content-Type"]
    assert Client().head(reverse("api-datasets")).status_code == 401


def test_an_admin_creates_and_changes_a_dataset(client_for, admin_user):
    client = client_for(admin_user)
    created = client.post(
        reverse("api-datasets"),
        {"name": "yard", "class_names": ["cone"]},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    dataset_id = created.json()["id"]
    changed = client.patch(
        reverse("api-dataset", args=[dataset_id]),
        {"add_classes": ["vest"], "description": "north yard"},
        content_type="application/json",
    )
    assert changed.json()["class_names"] == ["cone", "vest"]
    assert changed.json()["description"] == "north yard"
    duplicate = client.post(
        reverse("api-datasets"), {"name": "yard"}, content_type="application/json"
    )
    assert duplicate.status_code == 400 and "already exists" in str(duplicate.json())


def test_samples_page_with_filters_and_keyset_cursor(client_for, viewer_user, dataset):
    ids = [
        make_sample(dataset, seed, boxes=[("helmet", 1, 1, 5, 5)] if seed % 2 else None).pk
        for seed in range(5)
    ]
    client = client_for(viewer_user)
    url = reverse("api-samples", args=[dataset.pk])
    first = client.get(url, {"limit": 2}).json()
    assert [s["id"] for s in first["results"]] == ids[::-1][:2]
    second = client.get(url, {"limit": 2, "after": first["next_after"]}).json()
    assert [s["id"] for s in second["results"]] == ids[::-1][2:4]
    labeled = client.get(url, {"status": "labeled"}).json()["results"]
    assert {s["id"] for s in labeled} == {ids[1], ids[3]}
    assert labeled[0]["boxes"] == [{"class_name": "helmet", "x1": 1, "y1": 1, "x2": 5, "y2": 5}]
    assert labeled[0]["revision"] == 1


def test_a_device_uploads_a_sample_with_its_bearer_token(device_client, dataset):
    response = device_client.post(
        reverse("api-samples", args=[dataset.pk]),
        {
            "image": png_upload(),
            "boxes": json.dumps([{"class_name": "cone", "x1": 1, "y1": 2, "x2": 9, "y2": 9}]),
        },
    )
    assert response.status_code == 201, response.content
    sample = Sample.objects.get()
    assert sample.source == "device" and sample.status == "labeled"
    again = device_client.post(reverse("api-samples", args=[dataset.pk]), {"image": png_upload()})
    assert again.status_code == 200 and again.json()["id"] == sample.pk
    device_client.issued.device_token.refresh_from_db()
    assert device_client.issued.device_token.last_used_at is not None


def test_a_device_may_not_delete_or_label(device_client, dataset):
    sample = make_sample(dataset, 1)
    assert device_client.delete(reverse("api-dataset", args=[dataset.pk])).status_code == 403
    assert device_client.delete(reverse("api-sample", args=[sample.pk])).status_code == 403
    response = device_client.post(
        reverse("api-annotations", args=[sample.pk]), {"boxes": []}, content_type="application/json"
    )
    assert response.status_code == 403


def test_a_revoked_or_wrong_token_is_refused(device_client, dataset):
    revoke_device_token(device_client.issued.device_token.pk)
    assert device_client.get(reverse("api-datasets")).status_code == 401
    wrong = Client(headers={"Authorization": "Bearer ilp_not-a-token"})
    response = wrong.get(reverse("api-datasets"))
    assert response.status_code == 401 and "revoked" in response.json()["detail"]


def test_a_bad_image_gets_400_with_the_reason(device_client, dataset):
    fake = io.BytesIO(b"not an image")
    fake.name = "x.jpg"
    response = device_client.post(reverse("api-samples", args=[dataset.pk]), {"image": fake})
    assert response.status_code == 400 and "not an image" in response.json()["detail"]
    assert Sample.objects.count() == 0


def test_annotations_add_revisions_and_list_them(client_for, labeler_user, dataset):
    sample = make_sample(dataset, 1, boxes=[("helmet", 1, 1, 5, 5)])
    client = client_for(labeler_user)
    url = reverse("api-annotations", args=[sample.pk])
    created = client.post(
        url,
        {"boxes": [{"class_name": "vest", "x1": 0, "y1": 0, "x2": 80, "y2": 10}]},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["revision"] == 2 and "clipped" in created.json()["warnings"][0]
    history = client.get(url).json()
    assert [a["revision"] for a in history] == [1, 2]
    assert history[1]["created_by"] == "lena-labeler"
    bad = client.post(
        url,
        {"boxes": [{"class_name": "vest", "x1": 5, "y1": 0, "x2": 1, "y2": 4}]},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "inverted" in bad.json()["detail"]
    assert Annotation.objects.count() == 2


def test_a_sample_can_be_queued_for_labeling(client_for, labeler_user, dataset):
    sample = make_sample(dataset, 1)
    response = client_for(labeler_user).patch(
        reverse("api-sample", args=[sample.pk]),
        {"status": "queued"},
        content_type="application/json",
    )
    assert response.status_code == 200 and response.json()["status"] == "queued"


@pytest.mark.parametrize(
    "role, allowed",
    [("viewer", False), ("labeler", False), ("admin", True)],
)
def test_only_admins_delete_datasets(client_for, request, dataset, role, allowed):
    user = request.getfixturevalue(f"{role}_user")
    response = client_for(user).delete(reverse("api-dataset", args=[dataset.pk]))
    assert response.status_code == (204 if allowed else 403)
    assert Dataset.objects.filter(pk=dataset.pk).exists() is not allowed


def test_a_viewer_cannot_upload_or_delete_samples(client_for, viewer_user, dataset):
    sample = make_sample(dataset, 1)
    client = client_for(viewer_user)
    upload = client.post(reverse("api-samples", args=[dataset.pk]), {"image": png_upload(2)})
    assert upload.status_code == 403
    imports = client.post(reverse("api-imports", args=[dataset.pk]), {"files": [png_upload(3)]})
    assert imports.status_code == 403
    assert client.delete(reverse("api-sample", args=[sample.pk])).status_code == 403
    assert Sample.objects.count() == 1


def test_a_labeler_uploads_but_cannot_delete_samples(client_for, labeler_user, dataset):
    client = client_for(labeler_user)
    response = client.post(reverse("api-samples", args=[dataset.pk]), {"image": png_upload(2)})
    assert response.status_code == 201
    assert client.delete(reverse("api-sample", args=[response.json()["id"]])).status_code == 403


def test_session_writes_need_the_csrf_token(admin_user, dataset):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    response = client.delete(reverse("api-dataset", args=[dataset.pk]))
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]


def test_the_api_import_queues_a_job(device_client, dataset):
    response = device_client.post(
        reverse("api-imports", args=[dataset.pk]), {"files": [png_upload(1)], "format": "images"}
    )
    assert response.status_code == 202, response.content
    assert response.json()["job"]["kind"] == "dataset_import"


def test_the_openapi_schema_documents_the_endpoints(client):
    response = client.get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    for path in (
        "/api/v1/datasets/",
        "/api/v1/datasets/{dataset_id}/samples/",
        "/api/v1/samples/{sample_id}/annotations/",
        "/api/v1/datasets/{dataset_id}/imports/",
    ):
        assert path in paths, sorted(paths)
    assert "post" in paths["/api/v1/samples/{sample_id}/annotations/"]


def test_the_schema_generates_without_warnings_and_validates(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "deviceToken" in text and "cookieAuth" in text
