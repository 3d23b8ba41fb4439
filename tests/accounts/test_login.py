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


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_repeated_wrong_passwords_lock_that_account_from_that_address_for_a_while(
    client, settings, path
):
    settings.LOGIN_MAX_FAILURES, settings.LOGIN_LOCKOUT_S = 3, 600
    name = "locked-" + path.strip("/").replace("/", "-")
    UserFactory(username=name, role="admin")
    for _ in range(3):
        wrong = client.post(path, {"username": name, "password": "wrong"})
        assert wrong.status_code == 200 and b"Too many" not in wrong.content
    right = client.post(path, {"username": name.upper() + " ", "password": PASSWORD})
    assert b"Too many failed sign-ins" in right.content and b"10 minutes" in right.content
    assert SESSION_KEY not in client.session
    # Another address is not locked out (a stranger cannot lock a user out of their own sign-in).
    elsewhere = client.post(
        path, {"username": name, "password": PASSWORD}, REMOTE_ADDR="10.0.0.9", follow=True
    )
    assert SESSION_KEY in client.session, elsewhere.content[:300]


def test_a_right_password_clears_the_count(client, settings):
    settings.LOGIN_MAX_FAILURES = 2
    UserFactory(username="cleared", role="viewer")
    for _ in range(3):
        client.post("/login/", {"username": "cleared", "password": "wrong"})
        ok = client.post("/login/", {"username": "cleared", "password": PASSWORD})
        assert ok.status_code == 302  # one failure, then success: never locked
        client.logout()


def test_behind_a_trusted_proxy_each_client_address_is_counted_apart(client, settings):
    settings.LOGIN_MAX_FAILURES, settings.TRUSTED_PROXIES = 2, ["10.1.1.1"]
    UserFactory(username="proxied", role="viewer")
    via_proxy = {"REMOTE_ADDR": "10.1.1.1"}
    for _ in range(2):  # a stranger, through the proxy, trying to lock the user out
        client.post(
            "/login/",
            {"username": "proxied", "password": "wrong"},
            HTTP_X_FORWARDED_FOR="203.0.113.7",
            **via_proxy,
        )
    locked = client.post(
        "/login/",
        {"username": "proxied", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        **via_proxy,
    )
    assert b"Too many failed sign-ins" in locked.content
    # The user, through the same proxy from their own address, signs in; a spoofed left-hand
    # entry does not make the stranger's address theirs.
    mine = client.post(
        "/login/",
        {"username": "proxied", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.20",
        **via_proxy,
    )
    assert mine.status_code == 302


def test_x_forwarded_for_from_an_untrusted_address_is_ignored(client, settings):
    settings.LOGIN_MAX_FAILURES, settings.TRUSTED_PROXIES = 2, ["10.1.1.1"]
    UserFactory(username="direct", role="viewer")
    for spoofed in ("198.51.100.1", "198.51.100.2"):  # a new "address" each try
        client.post(
            "/login/",
            {"username": "direct", "password": "wrong"},
            HTTP_X_FORWARDED_FOR=spoofed,
            REMOTE_ADDR="192.0.2.50",
        )
    again = client.post(
        "/login/",
        {"username": "direct", "password": PASSWORD},
        HTTP_X_FORWARDED_FOR="198.51.100.3",
        REMOTE_ADDR="192.0.2.50",
    )
    assert b"Too many failed sign-ins" in again.content
