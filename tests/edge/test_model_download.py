"""A device downloads the deployed LiteRT file and archive with their sha256; polls cost a 304."""

import hashlib

import pytest
from django.urls import reverse

from apps.edge import services
from apps.loops import services as loops
from tests.edge.conftest import device_client

pytestmark = pytest.mark.django_db

MODEL_URLS = ["api-edge-model", "api-edge-model-litert", "api-edge-model-archive"]


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


@pytest.mark.parametrize("name", MODEL_URLS)
def test_a_weak_etag_matches(edge_loop, device, name):
    """If-None-Match compares weakly (RFC 9110): a proxy that compresses makes `"x"` into
    `W/"x"`, and polling through it must still get 304s."""
    url = reverse(name, args=[edge_loop.pk])
    etag = device.get(url)["ETag"]
    for sent in (f"W/{etag}", f'"nothing", W/{etag}', f"W/{etag}, *"):
        assert device.get(url, headers={"If-None-Match": sent}).status_code == 304, sent
    assert device.get(url, headers={"If-None-Match": 'W/"other"'}).status_code == 200


@pytest.mark.parametrize("name", MODEL_URLS)
def test_head_answers_wherever_get_does(edge_loop, device, name, client_for, viewer_user):
    """HEAD (a device checking for a new model without downloading it) gets GET's status and
    headers without the body, for devices and people alike."""
    url = reverse(name, args=[edge_loop.pk])
    got = device.get(url)
    for client in (device, client_for(viewer_user)):
        head = client.head(url)
        assert head.status_code == 200, head.content
        assert not head.content and not getattr(head, "streaming_content", None)
        for header in ("ETag", "Content-Type", "Content-Length"):
            assert head[header] == got[header], header
        assert head.get("X-Content-SHA256") == got.get("X-Content-SHA256")
        assert head.get("Content-Disposition") == got.get("Content-Disposition")
        assert client.head(url, headers={"If-None-Match": got["ETag"]}).status_code == 304


@pytest.mark.parametrize("name", ["litert", "archive"])
def test_the_manifests_file_urls_keep_their_version_after_a_deploy(
    edge_loop, device, edge_archive, name
):
    """A download that starts just after the pointer moved still gets the file the manifest
    named (an agent would otherwise see another version's bytes and refuse a good model)."""
    v1 = edge_loop.deployed_version
    manifest = device.get(reverse("api-edge-model", args=[edge_loop.pk])).json()
    v2 = loops.register_version(edge_loop, edge_archive["with_litert"], source="uploaded")
    loops.move_deployed_pointer(v2.pk, action="force", started_by="t", reason="t", job_id=None)
    pinned = device.get(manifest[name]["url"])
    assert pinned.status_code == 200 and pinned["X-Model-Version"] == str(v1.pk)
    assert pinned["X-Content-SHA256"] == manifest[name]["sha256"]
    deployed = device.get(reverse(f"api-edge-model-{name}", args=[edge_loop.pk]))
    assert deployed["X-Model-Version"] == str(v2.pk)  # without a version: the deployed one


def test_a_file_of_an_unknown_or_another_loops_version_is_refused(edge_loop, device, edge_archive):
    url = reverse("api-edge-model-litert", args=[edge_loop.pk])
    assert device.get(url + "?version=abc").status_code == 400
    assert device.get(url + "?version=%C2%B2").status_code == 400  # "²": a digit int() refuses
    assert device.get(url + "?version=999999").status_code == 404
    other = loops.create_loop(name="elsewhere", dataset=edge_loop.dataset)
    foreign = loops.register_version(other, edge_archive["with_litert"], source="uploaded")
    refused = device.get(url + f"?version={foreign.pk}")
    assert refused.status_code == 404 and "no version with id" in refused.json()["detail"]


def test_a_stored_yaml_naming_an_unlisted_plugin_is_a_409_and_imports_nothing(
    edge_loop, device, tmp_path, settings
):
    """A YAML saved before ALGORITHM_PLUGINS existed is not imported by the serving side."""
    from apps.edge import serving
    from apps.loops.models import Loop
    from tests.edge.conftest import loop_yaml

    settings.ALGORITHM_PLUGINS = []
    ran = tmp_path / "ran"
    plugin = tmp_path / "side_effect_at_serving.py"
    plugin.write_text(f"open({str(ran)!r}, 'w').close()\n")
    Loop.objects.filter(pk=edge_loop.pk).update(  # as stored by an older version
        algorithm_yaml=f"plugins: [{str(plugin)!r}]\n" + loop_yaml()
    )
    serving.clear()
    response = device.get(reverse("api-edge-model", args=[edge_loop.pk]))
    assert response.status_code == 409
    assert "not an allowed plugin module" in response.json()["detail"]
    assert not ran.exists()


def test_a_model_file_lost_from_storage_is_a_clear_409(edge_loop, device, caplog):
    """Not a 500: the device keeps its model and says why; the operator finds it in the log."""
    from django.core.files.storage import default_storage

    version = edge_loop.deployed_version
    default_storage.delete(version.litert.name)
    for url in ("api-edge-model", "api-edge-model-litert"):
        response = device.get(reverse(url, args=[edge_loop.pk]))
        assert response.status_code == 409, (url, response.content[:200])
        assert "is missing from storage" in response.json()["detail"]
    assert device.head(reverse("api-edge-model-litert", args=[edge_loop.pk])).status_code == 409
    default_storage.delete(version.artifact.name)
    response = device.get(reverse("api-edge-model-archive", args=[edge_loop.pk]))
    assert response.status_code == 409 and version.artifact.name in response.json()["detail"]
    assert "missing from storage" in caplog.text
