import hashlib

import pytest

from apps.accounts import services
from apps.accounts.models import DeviceToken
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_token_is_shown_once_and_stored_hashed(client):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/accounts/devices/", {"name": "line-3-camera", "all_loops": "on"})
    raw = response.context["issued"].raw_token
    assert raw.encode() in response.content
    token = DeviceToken.objects.get()
    assert token.token_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {token.name, token.prefix, token.token_sha256}
    assert raw.encode() not in client.get("/accounts/devices/").content


def test_the_page_with_a_new_token_is_not_cached(client):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/accounts/devices/", {"name": "line-3-camera", "all_loops": "on"})
    assert response.context["issued"] is not None
    assert "no-store" in response["Cache-Control"]


def test_token_authenticates_until_revoked():
    issued = services.create_device_token(name="cam", created_by=None)
    assert services.authenticate_device_token(issued.raw_token) == issued.device_token
    assert DeviceToken.objects.get().last_used_at is not None
    services.revoke_device_token(issued.device_token.pk)
    assert services.authenticate_device_token(issued.raw_token) is None


@pytest.mark.parametrize("raw", ["", "ilp_wrong", "Bearer xyz"])
def test_unknown_tokens_do_not_authenticate(raw):
    services.create_device_token(name="cam", created_by=None)
    assert services.authenticate_device_token(raw) is None


def test_blank_name_is_a_form_error(client):
    client.force_login(UserFactory(role="admin"))
    response = client.post("/accounts/devices/", {"name": ""})
    assert response.status_code == 200
    assert response.context["form"].errors["name"]
    assert DeviceToken.objects.count() == 0


@pytest.mark.parametrize("role", ["labeler", "viewer"])
def test_non_admins_cannot_create_or_revoke_tokens(client, role):
    issued = services.create_device_token(name="cam", created_by=None)
    client.force_login(UserFactory(role=role))
    assert client.post("/accounts/devices/", {"name": "x"}).status_code == 403
    assert client.post(f"/accounts/devices/{issued.device_token.pk}/revoke/").status_code == 403
    assert DeviceToken.objects.count() == 1
    assert DeviceToken.objects.get().revoked_at is None


def test_admin_revokes_a_token(client):
    issued = services.create_device_token(name="cam", created_by=None)
    client.force_login(UserFactory(role="admin"))
    asked = client.post(f"/accounts/devices/{issued.device_token.pk}/revoke/")
    assert asked.status_code == 200 and "Revoke token" in asked.content.decode()
    assert DeviceToken.objects.get().revoked_at is None
    client.post(f"/accounts/devices/{issued.device_token.pk}/revoke/", {"confirmed": "yes"})
    assert DeviceToken.objects.get().revoked_at is not None
