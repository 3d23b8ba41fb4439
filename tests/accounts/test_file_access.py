"""Stored files reach a user only through views that check the permission, on local storage and
on S3, whichever server sends the bytes (FILE_SERVING)."""

import hashlib
import time
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from apps.datasets.thumbnails import ensure_thumbnail
from apps.loops.models import ModelVersion
from apps.loops.services import create_loop
from tests.factories import DatasetFactory, UserFactory, make_sample

pytestmark = pytest.mark.django_db

ARCHIVE = b"PK\x05\x06" + b"\0" * 18  # an empty zip


@pytest.fixture
def files():
    """A sample (image + thumbnail) and a model version's archive; their URLs and storage names."""
    dataset = DatasetFactory()
    sample = make_sample(dataset, seed=1)
    ensure_thumbnail(sample)
    loop = create_loop(name="line-1", dataset=dataset)
    name = default_storage.save("models/line-1/v1.zip", ContentFile(ARCHIVE))
    ModelVersion.objects.create(
        loop=loop,
        number=1,
        source="uploaded",
        artifact=name,
        artifact_sha256=hashlib.sha256(ARCHIVE).hexdigest(),
        artifact_size=len(ARCHIVE),
    )
    sample.refresh_from_db()
    return {
        f"/datasets/samples/{sample.pk}/image/": sample.image.name,
        f"/datasets/samples/{sample.pk}/thumbnail/": sample.thumbnail.name,
        f"/loops/{loop.pk}/v1/download/archive/": name,
    }


def test_there_is_no_open_media_route(client, files):
    client.force_login(UserFactory(role="admin"))
    for name in files.values():
        assert client.get(f"/media/{name}").status_code == 404


def test_a_user_without_a_role_gets_403(client, files):
    client.force_login(UserFactory())
    for url in files:
        assert client.get(url).status_code == 403, url


def test_anonymous_users_are_sent_to_log_in(client, files):
    for url in files:
        assert client.get(url).status_code == 302, url


def test_a_viewer_gets_each_file_privately(client, files):
    client.force_login(UserFactory(role="viewer"))
    for url, name in files.items():
        response = client.get(url)
        assert response.status_code == 200, url
        with default_storage.open(name, "rb") as stored:
            assert b"".join(response.streaming_content) == stored.read()
        assert response["Cache-Control"].startswith("private")


def test_nginx_sends_the_file_after_the_check(client, files, settings):
    settings.FILE_SERVING = "x-accel-redirect"
    client.force_login(UserFactory(role="viewer"))
    for url, name in files.items():
        response = client.get(url)
        assert response.status_code == 200
        assert response["X-Accel-Redirect"] == f"/protected-media/{name}"
        assert response.content == b""
    archive = client.get(next(u for u in files if "download" in u))
    assert archive["Content-Disposition"].startswith("attachment;")
    client.force_login(UserFactory())
    assert all("X-Accel-Redirect" not in client.get(url) for url in files)


def test_s3_files_go_through_short_lived_presigned_urls(client, s3_storage, settings):
    settings.FILE_SERVING = "s3-presigned"
    settings.FILE_SERVING_URL_EXPIRY_S = 30
    dataset = DatasetFactory()
    sample = make_sample(dataset, seed=2)
    client.force_login(UserFactory(role="viewer"))
    response = client.get(f"/datasets/samples/{sample.pk}/image/")
    assert response.status_code == 302
    assert response["Cache-Control"] == "no-store"
    url = response["Location"]
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:  # SigV4
        assert query["X-Amz-Expires"] == ["30"]
    else:  # SigV2: an absolute time
        assert 0 < int(query["Expires"][0]) - time.time() <= 30
    # The moto server answers the signed URL.
    with urllib.request.urlopen(url) as fetched, default_storage.open(sample.image.name) as stored:
        assert fetched.read() == stored.read()
    client.force_login(UserFactory())
    assert client.get(f"/datasets/samples/{sample.pk}/image/").status_code == 403


def test_s3_files_can_also_stream_through_the_portal(client, s3_storage):
    sample = make_sample(DatasetFactory(), seed=3)
    client.force_login(UserFactory(role="viewer"))
    response = client.get(f"/datasets/samples/{sample.pk}/thumbnail/")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
