"""Only admins add classes to a dataset, whichever way: PATCH, or an import with
unknown_classes=add (API or upload page). Refused before any job starts."""

import io
import json

import pytest

from apps.accounts import services as accounts
from apps.jobs.models import Job
from tests.factories import DatasetFactory, UserFactory, image_bytes

pytestmark = pytest.mark.django_db

COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
    "categories": [{"id": 1, "name": "forklift"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
}


def _files():
    image = io.BytesIO(image_bytes(1))
    image.name = "a.png"
    labels = io.BytesIO(json.dumps(COCO).encode())
    labels.name = "labels.json"
    return [image, labels]


def _api_import(client, dataset, unknown_classes, **headers):
    return client.post(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        {"files": _files(), "unknown_classes": unknown_classes},
        **headers,
    )


@pytest.mark.parametrize("role", ["labeler", "viewer"])
def test_a_non_admin_import_may_not_add_classes(client, role):
    dataset = DatasetFactory()
    client.force_login(UserFactory(role=role))
    response = _api_import(client, dataset, "add")
    assert response.status_code == 403
    if role == "labeler":
        assert "Only admins may add classes" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_device_token_import_may_not_add_classes(client):
    dataset = DatasetFactory()
    raw = accounts.create_device_token(name="cam", created_by=None, all_loops=True).raw_token
    response = _api_import(client, dataset, "add", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403
    assert "Only admins may add classes" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_a_labeler_may_still_import_rejecting_unknown_classes(client):
    dataset = DatasetFactory()
    client.force_login(UserFactory(role="labeler"))
    assert _api_import(client, dataset, "reject").status_code == 202
    assert Job.objects.filter(kind="dataset_import").count() == 1


def test_an_admin_import_may_add_classes(client):
    dataset = DatasetFactory()
    client.force_login(UserFactory(role="admin"))
    assert _api_import(client, dataset, "add").status_code == 202
    assert Job.objects.get(kind="dataset_import").params["unknown_classes"] == "add"


def test_the_upload_page_refuses_add_for_a_labeler_with_a_form_error(client):
    dataset = DatasetFactory()
    client.force_login(UserFactory(role="labeler"))
    url = f"/datasets/{dataset.pk}/upload/"
    assert b'value="add"' not in client.get(url).content  # not offered
    data = {"files": _files(), "format": "auto", "unknown_classes": "add"}
    page = client.post(url, data)
    assert page.status_code == 200
    assert "Only admins may add classes" in page.context["form"].errors["unknown_classes"][0]
    data["files"] = _files()
    as_json = client.post(url, data, HTTP_ACCEPT="application/json")
    assert as_json.status_code == 400
    assert any("Only admins may add classes" in e for e in as_json.json()["errors"])
    assert Job.objects.count() == 0


def test_the_upload_page_lets_an_admin_add_classes(client):
    dataset = DatasetFactory()
    client.force_login(UserFactory(role="admin"))
    assert b'value="add"' in client.get(f"/datasets/{dataset.pk}/upload/").content
    data = {"files": _files(), "format": "auto", "unknown_classes": "add"}
    response = client.post(f"/datasets/{dataset.pk}/upload/", data)
    assert response.status_code == 302
    assert Job.objects.get(kind="dataset_import").params["unknown_classes"] == "add"
