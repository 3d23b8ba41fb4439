"""Storage write errors in the API and on pages become clear answers, not bare 500s."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.datasets.models import Sample
from tests.factories import DatasetFactory, UserFactory, image_bytes
from tests.ops.conftest import unwritable

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(UserFactory(role="admin"))
    return client


def test_the_api_answers_json_503_when_storage_refuses_a_sample(admin_client, settings):
    dataset = DatasetFactory()
    with unwritable(settings.MEDIA_ROOT):
        response = admin_client.post(
            f"/api/v1/datasets/{dataset.pk}/samples/",
            {"image": SimpleUploadedFile("a.png", image_bytes(3), content_type="image/png")},
        )
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert "The file storage refused the write" in response.json()["detail"]
    assert not Sample.objects.exists()
    # Writable again: the same upload goes through.
    response = admin_client.post(
        f"/api/v1/datasets/{dataset.pk}/samples/",
        {"image": SimpleUploadedFile("a.png", image_bytes(3), content_type="image/png")},
    )
    assert response.status_code == 201


def test_an_upload_page_goes_back_with_the_reason(admin_client, settings):
    dataset = DatasetFactory()
    page = f"http://testserver/datasets/{dataset.pk}/upload/"
    with unwritable(settings.MEDIA_ROOT):
        response = admin_client.post(
            f"/datasets/{dataset.pk}/upload/",
            {
                "files": [SimpleUploadedFile("a.png", image_bytes(4), content_type="image/png")],
                "format": "auto",
                "unknown_classes": "reject",
            },
            HTTP_REFERER=page,
        )
    assert response.status_code == 302 and response["Location"] == page
    assert "The file storage refused the write" in admin_client.get(page).content.decode()


def test_the_upload_page_script_gets_json(admin_client, settings):
    dataset = DatasetFactory()
    with unwritable(settings.MEDIA_ROOT):
        response = admin_client.post(
            f"/datasets/{dataset.pk}/upload/",
            {
                "files": [SimpleUploadedFile("a.png", image_bytes(4), content_type="image/png")],
                "format": "auto",
                "unknown_classes": "reject",
            },
            HTTP_ACCEPT="application/json",
        )
    assert response.status_code == 503
    assert "storage" in response.json()["detail"]


def test_adding_a_model_version_while_storage_fails_goes_back_with_the_reason(
    admin_client, monkeypatch
):
    from apps.loops import artifacts, services
    from tests.loops.conftest import tiny_yaml

    tiny_loop = services.create_loop(
        name="line-9", dataset=DatasetFactory(), algorithm_yaml=tiny_yaml()
    )

    def storage_refuses(*args, **kwargs):
        raise artifacts.ArtifactError(
            "storing models/loop-1/abc-model.zip failed 4 times: [Errno 13] Permission denied"
        )

    monkeypatch.setattr(services, "add_uploaded_version", storage_refuses)
    page = f"http://testserver/loops/{tiny_loop.pk}/"
    response = admin_client.post(
        f"/loops/{tiny_loop.pk}/versions/add/",
        {"archive": SimpleUploadedFile("model.zip", b"PK\x03\x04", content_type="application/zip")},
        HTTP_REFERER=page,
    )
    assert response.status_code == 302 and response["Location"] == page
    assert "Permission denied" in admin_client.get(page).content.decode()
