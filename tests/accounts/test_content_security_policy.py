"""Every response carries a Content-Security-Policy that runs scripts from the portal only (none
inline), allows the object store's images when files are served by presigned URLs, and can be
replaced or turned off by the operator. The templates keep to it: no inline script or handler."""

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


def test_pages_run_only_the_portals_own_scripts(client):
    client.force_login(UserFactory(role="viewer"))
    for url in ("/", "/login/", "/api/v1/loops/", "/no-such-page/"):
        policy = directives(client.get(url))
        assert policy["script-src"] == ["'self'"], url
        assert policy["default-src"] == ["'self'"], url
        assert policy["object-src"] == ["'none'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        assert policy["img-src"] == ["'self'", "data:", "blob:"], url
        assert "'unsafe-inline'" not in policy["style-src"], url


def test_presigned_files_may_load_from_the_object_store(
    client, s3_storage, moto_endpoint, settings
):
    settings.FILE_SERVING = "s3-presigned"
    response = client.get("/login/")
    assert directives(response)["img-src"] == ["'self'", "data:", "blob:", moto_endpoint]


def test_an_operator_replaces_the_policy_or_turns_it_off(settings):
    # The policy is read when the middleware is built: a new client (handler) per setting.
    settings.CONTENT_SECURITY_POLICY = "default-src 'self' https://cdn.example"
    response = Client().get("/login/")
    assert response["Content-Security-Policy"] == "default-src 'self' https://cdn.example"
    settings.CONTENT_SECURITY_POLICY = ""
    assert "Content-Security-Policy" not in Client().get("/login/")


def test_templates_have_no_inline_script_or_event_handler():
    offences = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text, flags=re.IGNORECASE):
            if "src=" not in tag and 'type="application/json"' not in tag:
                offences.append(f"{template.name}: inline {tag}")
        for handler in re.findall(r"\son[a-z]+\s*=", text, flags=re.IGNORECASE):
            offences.append(f"{template.name}: handler {handler.strip()}")
        if "javascript:" in text.lower():
            offences.append(f"{template.name}: javascript: URL")
    assert not offences, offences


def test_a_store_that_cannot_sign_yet_still_gives_the_endpoints_origin(settings):
    """Signing needs credentials: without them the pages must still work (local storage here
    cannot sign at all, as a store without credentials cannot)."""
    settings.FILE_SERVING = "s3-presigned"
    settings.S3_ENDPOINT_URL = "https://objects.example:9000/some/path"
    policy = directives(Client().get("/login/"))
    assert policy["img-src"] == ["'self'", "data:", "blob:", "https://objects.example:9000"]
