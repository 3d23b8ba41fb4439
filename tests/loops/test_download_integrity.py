"""The archive download serves only bytes that match their recorded sha256 (sent as the ETag)."""

import hashlib

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.loops.models import ModelVersion
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def stored_version(tiny_loop):
    data = b"PK\x03\x04 a model archive" * 100
    name = default_storage.save(f"models/loop-{tiny_loop.pk}/abc-model.zip", ContentFile(data))
    sha256 = hashlib.sha256(data).hexdigest()
    version = ModelVersion.objects.create(
        loop=tiny_loop, number=1, source="uploaded", artifact=name,
        artifact_sha256=sha256, artifact_size=len(data),
    )  # fmt: skip
    return version, data, sha256


def test_a_good_archive_is_served_with_its_sha256_as_etag(client, stored_version):
    version, data, sha256 = stored_version
    client.force_login(UserFactory(role="viewer"))
    url = f"/loops/{version.loop_id}/v1/download/archive/"
    response = client.get(url)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == data
    assert response["ETag"] == f'"{sha256}"'
    assert client.get(url, HTTP_IF_NONE_MATCH=f'"{sha256}"').status_code == 304


def test_a_corrupt_archive_is_refused_with_the_reason(client, stored_version, settings):
    version, data, _ = stored_version
    path = settings.MEDIA_ROOT / version.artifact.name
    path.write_bytes(data[:-10] + b"0123456789")
    client.force_login(UserFactory(role="viewer"))
    response = client.get(f"/loops/{version.loop_id}/v1/download/archive/")
    assert response.status_code == 500
    text = response.content.decode()
    assert "does not match its sha256" in text and "re-upload or retrain v1" in text
