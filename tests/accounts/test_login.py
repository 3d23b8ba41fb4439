import pytest
from django.contrib.auth import SESSION_KEY
from django.urls import reverse

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

PAGES = ["/", "/jobs/", "/accounts/devices/", "/jobs/1/", "/jobs/1/state/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_requires_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_healthz_is_public(client):
    assert client.get("/healthz").status_code in (200, 503)


def test_login_with_right_password_opens_the_overview(client):
    UserFactory(username="vera", role="viewer")
    response = client.post("/login/", {"username": "vera", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert b"Overview" in response.content
    assert SESSION_KEY in client.session


def test_wrong_password_is_refused_with_a_message_and_no_session(client):
    UserFactory(username="vera", role="viewer")
    response = client.post("/login/", {"username": "vera", "password": "wrong"})
    assert response.status_code == 200
    assert b"didn't match" in response.content
    assert SESSION_KEY not in client.session
    assert client.get("/").status_code == 302


def test_expired_session_sends_back_to_login(client, settings):
    user = UserFactory(role="admin")
    client.force_login(user)
    assert client.get("/").status_code == 200
    session = client.session
    session.set_expiry(-1)
    session.save()
    response = client.get("/jobs/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_logout_needs_post_and_ends_the_session(client):
    client.force_login(UserFactory(role="viewer"))
    client.post("/logout/")
    assert client.get("/").status_code == 302
