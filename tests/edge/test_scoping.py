"""Device tokens act only on their loops and those loops' datasets; admins scope them."""

import pytest
from django.urls import reverse

from apps.accounts.models import DeviceToken
from apps.datasets.models import Sample
from apps.datasets.services import create_dataset
from apps.loops.services import create_loop
from tests.edge.conftest import device_client, scene_png
from tests.factories import make_sample

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_sites(db):
    site_a = create_dataset(name="site-a", class_names=["cone"])
    site_b = create_dataset(name="site-b", class_names=["cone"])
    loop_a = create_loop(name="loop-a", dataset=site_a)
    loop_b = create_loop(name="loop-b", dataset=site_b)
    return site_a, site_b, loop_a, loop_b


def test_a_scoped_token_reads_and_uploads_only_its_loops_datasets(two_sites):
    site_a, site_b, loop_a, _ = two_sites
    sample_b = make_sample(site_b, 2)
    client = device_client(loop_a)
    listed = client.get(reverse("api-datasets")).json()
    assert [d["name"] for d in listed] == ["site-a"]
    assert client.get(reverse("api-dataset", args=[site_a.pk])).status_code == 200
    for url in (
        reverse("api-dataset", args=[site_b.pk]),
        reverse("api-samples", args=[site_b.pk]),
        reverse("api-sample", args=[sample_b.pk]),
    ):
        refused = client.get(url)
        assert refused.status_code == 403, url
        assert "not scoped" in refused.json()["detail"]
    upload = client.post(reverse("api-samples", args=[site_b.pk]), {"image": _named(scene_png(1))})
    assert upload.status_code == 403
    imported = client.post(
        reverse("api-imports", args=[site_b.pk]), {"files": [_named(scene_png(1))]}
    )
    assert imported.status_code == 403
    assert Sample.objects.filter(dataset=site_b).count() == 1
    ok = client.post(reverse("api-samples", args=[site_a.pk]), {"image": _named(scene_png(3))})
    assert ok.status_code == 201 and ok.json()["source"] == "device"


def test_an_unscoped_token_keeps_working_everywhere(two_sites):
    _, site_b, _, _ = two_sites
    client = device_client(all_loops=True)
    assert len(client.get(reverse("api-datasets")).json()) == 2
    assert client.get(reverse("api-samples", args=[site_b.pk])).status_code == 200


def test_a_token_without_loops_can_do_nothing(two_sites):
    site_a, _, loop_a, _ = two_sites
    client = device_client()
    assert client.get(reverse("api-datasets")).json() == []
    assert client.get(reverse("api-dataset", args=[site_a.pk])).status_code == 403
    response = client.post(
        reverse("api-edge-predict", args=[loop_a.pk]), scene_png(1), content_type="image/png"
    )
    assert response.status_code == 403


def test_the_migration_leaves_existing_tokens_unscoped():
    """0002_device_token_scope's data step: tokens issued before scoping keep every loop."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("apps.accounts.migrations.0002_device_token_scope")
    old = DeviceToken.objects.create(name="old", prefix="ilp_x", token_sha256="a" * 64)
    assert not old.all_loops
    migration.keep_existing_tokens_unscoped(apps, None)
    old.refresh_from_db()
    assert old.all_loops


def test_admins_create_scope_and_revoke_tokens_on_the_devices_page(
    two_sites, client_for, admin_user
):
    _, _, loop_a, loop_b = two_sites
    client = client_for(admin_user)
    refused = client.post("/accounts/devices/", {"name": "cam"})
    assert b"Choose the loops" in refused.content and not DeviceToken.objects.exists()
    created = client.post("/accounts/devices/", {"name": "cam", "loops": [loop_a.pk]})
    token = DeviceToken.objects.get()
    assert created.context["issued"].raw_token.startswith("ilp_")
    assert list(token.loops.all()) == [loop_a] and not token.all_loops
    page = client.get("/accounts/devices/").content.decode()
    assert "loop-a" in page and "Scope" in page
    client.post(reverse("accounts:token_scope", args=[token.pk]), {"loops": [loop_b.pk]})
    token.refresh_from_db()
    assert list(token.loops.all()) == [loop_b]
    assert token.may_use_loop(loop_b.pk) and not token.may_use_loop(loop_a.pk)
    client.post(reverse("accounts:revoke_token", args=[token.pk]), {"confirmed": "yes"})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_non_admins_cannot_scope_tokens(two_sites, client_for, labeler_user):
    _, _, loop_a, _ = two_sites
    token = device_client(loop_a).token
    client = client_for(labeler_user)
    url = reverse("accounts:token_scope", args=[token.pk])
    assert client.post(url, {"all_loops": "on"}).status_code == 403
    token.refresh_from_db()
    assert not token.all_loops


def _named(data: bytes):
    import io

    upload = io.BytesIO(data)
    upload.name = "frame.png"
    return upload
