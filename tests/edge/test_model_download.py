"""A device downloads the deployed LiteRT file and archive with their sha256; polls cost a 304."""

import hashlib

import pytest
from django.urls import reverse

from apps.edge import services
from apps.loops import services as loops
from tests.edge.conftest import device_client

pytestmark = pytest.mark.django_db


def test_manifest_names_files_sha256_decoder_and_miner(edge_loop, device):
    response = device.get(reverse("api-edge-model", args=[edge_loop.pk]))
    assert response.status_code == 200
    manifest = response.json()
    version = edge_loop.deployed_version
    assert manifest["version"] == {"id": version.pk, "number": 1, "label": "v1"}
    assert manifest["litert"]["sha256"] == version.litert_sha256
    assert manifest["archive"]["sha256"] == version.artifact_sha256
    assert manifest["decoder"]["class_names"] == ["helmet", "vest", "cone"]
    assert manifest["decoder"]["input_size"] == 64
    assert manifest["miner"] == {"name": "CloudOnly", "hyperparameters": {}}
    assert manifest["intake"] == {"mode": "hard", "sample_percent": 0}

    litert = device.get(reverse("api-edge-model-litert", args=[edge_loop.pk]))
    data = b"".join(litert.streaming_content)
    assert hashlib.sha256(data).hexdigest() == manifest["litert"]["sha256"]
    assert litert["ETag"] == f'"{version.litert_sha256}"'
    archive = device.get(reverse("api-edge-model-archive", args=[edge_loop.pk]))
    assert hashlib.sha256(b"".join(archive.streaming_content)).hexdigest() == (
        version.artifact_sha256
    )


def test_polling_with_the_etag_is_a_304_until_something_changes(edge_loop, device, edge_archive):
    url = reverse("api-edge-model", args=[edge_loop.pk])
    etag = device.get(url)["ETag"]
    again = device.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    services.update_policy(edge_loop, mode="sample", sample_percent=10)
    changed = device.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json()["intake"]["sample_percent"] == 10
    etag = changed["ETag"]
    v2 = loops.register_version(edge_loop, edge_archive["with_litert"], source="uploaded")
    loops.move_deployed_pointer(v2.pk, action="force", started_by="t", reason="t", job_id=None)
    moved = device.get(url, headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.json()["version"]["label"] == "v2"
    file_url = reverse("api-edge-model-litert", args=[edge_loop.pk])
    same_file = device.get(file_url, headers={"If-None-Match": f'"{v2.litert_sha256}"'})
    assert same_file.status_code == 304


def test_download_needs_scope_and_a_deployed_model(edge_loop, admin_user):
    from apps.datasets.services import create_dataset

    other = loops.create_loop(name="other", dataset=create_dataset(name="o", class_names=["cone"]))
    stranger = device_client(other)
    assert stranger.get(reverse("api-edge-model", args=[edge_loop.pk])).status_code == 403
    nothing = stranger.get(reverse("api-edge-model", args=[other.pk]))
    assert nothing.status_code == 409 and "no deployed model" in nothing.json()["detail"]
    assert stranger.get(reverse("api-edge-model-litert", args=[other.pk])).status_code == 409
