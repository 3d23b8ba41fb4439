"""apps.edge.predict_route: a device's raw-image predict, answered before Django's request cycle.

It must answer exactly as the REST view does (status, body, headers), take only the requests it
is meant for, and keep the hardening rule: a body larger than Django reads from anyone is not read
before the token is known.
"""

import asyncio

import pytest
from django.urls import reverse

from apps.edge import predict_route, services
from apps.edge.models import IntakeMode
from tests.edge.conftest import AsgiClient, asgi_scope, device_client, scene_png

pytestmark = pytest.mark.django_db

COMPARED_HEADERS = (
    "content-type",
    "vary",
    "allow",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "cross-origin-opener-policy",
    "www-authenticate",
    "retry-after",
)


@pytest.fixture
def route_calls(monkeypatch):
    """The requests the route answered (the rest went on to Django)."""
    answered = []
    answer = predict_route._answer

    async def counting(request, receive, send):
        answered.append(request)
        await answer(request, receive, send)

    monkeypatch.setattr(predict_route, "_answer", counting)
    return answered


def url(loop_id):
    return reverse("api-edge-predict", args=[loop_id])


def both(token_raw: str, loop_id: int, data: bytes, content_type="image/png", **headers):
    """The same request through the REST view and through the ASGI application."""
    from django.test import Client

    sent = {"Authorization": f"Bearer {token_raw}", **headers}
    rest = Client(headers=sent).post(url(loop_id), data, content_type=content_type)
    asgi = AsgiClient(sent).post(url(loop_id), data, content_type=content_type)
    return rest, asgi


def assert_same(rest, asgi):
    assert asgi.status_code == rest.status_code, (rest.content, asgi.content)
    assert asgi.json() == rest.json()
    for name in COMPARED_HEADERS:
        assert asgi.headers.get(name) == rest.headers.get(name), name


def test_the_route_answers_as_the_rest_view_does(edge_loop, route_calls, settings):
    from apps.datasets.services import create_dataset
    from apps.loops.models import Loop
    from apps.loops.services import create_loop

    services.update_policy(edge_loop, mode=IntakeMode.NOTHING)
    device = device_client(edge_loop)
    token = device.raw_token
    assert_same(*both(token, edge_loop.pk, scene_png(1)))  # 200
    assert_same(*both("ilp_unknown", edge_loop.pk, scene_png(1)))  # 401
    assert_same(*both(token, 999_999, scene_png(1)))  # 404
    other = create_loop(name="other", dataset=create_dataset(name="o", class_names=["cone"]))
    assert_same(*both(token, other.pk, scene_png(1)))  # 403: out of scope
    assert_same(*both(token, edge_loop.pk, b"GIF89a nope"))  # 400
    assert_same(*both(token, edge_loop.pk, b""))  # 400: empty
    settings.EDGE_MAX_IMAGE_BYTES = 1000
    assert_same(*both(token, edge_loop.pk, b"\x89PNG" + b"\0" * 2000))  # 413 by length
    settings.EDGE_MAX_IMAGE_BYTES = 20 * 1024**2
    settings.EDGE_DEVICE_REQUESTS_PER_MINUTE = 1
    rest, asgi = both(token, edge_loop.pk, scene_png(2))  # both over the rate now
    assert rest.status_code == asgi.status_code == 429 and asgi["Retry-After"]
    settings.EDGE_DEVICE_REQUESTS_PER_MINUTE = 0
    Loop.objects.filter(pk=edge_loop.pk).update(deployed_version=None)
    assert_same(*both(token, edge_loop.pk, scene_png(1)))  # 409
    assert len(route_calls) == 9  # every ASGI request above was the route's


def test_an_outage_is_503_with_retry_after_on_both_doors(edge_loop, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(services, "take_in", disk_full)
    rest, asgi = both(device_client(edge_loop).raw_token, edge_loop.pk, scene_png(1))
    assert rest.status_code == asgi.status_code == 503
    assert asgi.json() == rest.json() and "No space left" in asgi.json()["detail"]
    assert asgi["Retry-After"] == rest["Retry-After"]


def test_other_requests_go_on_to_django(edge_loop, route_calls, viewer_user, settings):
    from django.test import Client

    device = device_client(edge_loop, transport="asgi")
    assert device.post(url(edge_loop.pk), {"image": _file(scene_png(1))}).status_code == 200
    browsable = device.post(
        url(edge_loop.pk), scene_png(1), content_type="image/png", headers={"Accept": "text/html"}
    )
    assert browsable.status_code == 200 and "text/html" in browsable["Content-Type"]  # DRF's page
    refused = device.post(
        url(edge_loop.pk), scene_png(1), content_type="image/png", headers={"Accept": "text/xml"}
    )
    assert refused.status_code == 406  # DRF's content negotiation
    wrong_host = device.post(
        url(edge_loop.pk), scene_png(1), content_type="image/png", headers={"Host": "evil.test"}
    )
    assert wrong_host.status_code == 400  # Django's ALLOWED_HOSTS
    browser = Client()
    browser.force_login(viewer_user)
    session = AsgiClient({"Cookie": f"sessionid={browser.cookies['sessionid'].value}"})
    # A session without a CSRF token: Django's CSRF check refuses it, as it must.
    assert (
        session.post(url(edge_loop.pk), scene_png(1), content_type="image/png").status_code == 403
    )
    long_id = device.post(url(1).replace("/1/", "/" + "9" * 5000 + "/"), scene_png(1), "image/png")
    assert long_id.status_code == 404
    assert route_calls == []
    settings.SECURE_HSTS_SECONDS = 3600
    secure = device.post(url(edge_loop.pk), scene_png(1), content_type="image/png", secure=True)
    # Django's security middleware (whose settings are read when the application starts) answers.
    assert secure.status_code == 200 and route_calls == []
    settings.SECURE_HSTS_SECONDS = 0
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert device.post(url(edge_loop.pk), scene_png(1), content_type="image/png").status_code == 200
    assert route_calls == []
    settings.SECURE_PROXY_SSL_HEADER = None
    fine = device.post(
        url(edge_loop.pk), scene_png(1), content_type="image/png", headers={"Accept": "*/*"}
    )
    assert fine.status_code == 200 and len(route_calls) == 1


@pytest.mark.parametrize(
    "repeated, second",
    [
        ("authorization", "Bearer ilp_not-a-token"),
        ("content-type", "multipart/form-data; boundary=x"),
        ("accept", "text/html"),
        ("content-length", "1"),
    ],
)
def test_a_request_repeating_a_header_the_route_reads_goes_on_to_django(
    edge_loop, route_calls, repeated, second
):
    """Django joins a repeated header with commas (two tokens are a 401 there); the route took
    the first one, and so answered some requests otherwise than the REST view."""
    device = device_client(edge_loop, transport="asgi")
    data = scene_png(1)
    sent = {
        "host": "testserver",
        "authorization": f"Bearer {device.raw_token}",
        "content-type": "image/png",
        "content-length": str(len(data)),
        "accept": "application/json",
    }
    scope = asgi_scope(url(edge_loop.pk), sent)
    scope["headers"].append((repeated.encode(), second.encode()))
    status = _call_with(scope, data)
    assert route_calls == []
    if repeated == "authorization":
        assert status == 401


def _call_with(scope, body: bytes) -> int:
    """The status of a request through the ASGI application, as AsgiClient sends it (in the
    test's transaction), for a scope AsgiClient cannot make (a repeated header)."""
    from asgiref.sync import async_to_sync
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from tests.edge.conftest import _call

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        return async_to_sync(_call)(scope, body).status_code
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _file(data: bytes, name="a.png"):
    import io

    upload = io.BytesIO(data)
    upload.name = name
    return upload


def _send_raw(headers: dict[str, str], chunks: list[bytes], loop_id: int):
    """Calls the ASGI application with a body in ``chunks``; (status, detail, chunks read)."""
    from asgiref.sync import async_to_sync

    from ilportal.asgi import application

    read = []

    async def receive():
        if len(read) < len(chunks):
            read.append(chunks[len(read)])
            return {
                "type": "http.request",
                "body": read[-1],
                "more_body": len(read) < len(chunks),
            }
        await asyncio.Future()

    sent = []

    async def send(message):
        sent.append(message)

    scope = asgi_scope(url(loop_id), headers)
    async_to_sync(application)(scope, receive, send)
    import json

    status = sent[0]["status"]
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    return status, body["detail"], len(read)


def test_a_large_body_is_not_read_before_the_token_is_known(edge_loop, settings, route_calls):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    headers = {
        "Host": "testserver",
        "Authorization": "Bearer ilp_unknown",
        "Content-Type": "image/png",
        "Content-Length": "5000",
    }
    status, detail, read = _send_raw(headers, [b"\0" * 5000], edge_loop.pk)
    assert (status, read) == (401, 0) and "Unknown or revoked" in detail
    # No length announced: the token is checked first too.
    del headers["Content-Length"]
    status, _, read = _send_raw(headers, [b"\0" * 500] * 4, edge_loop.pk)
    assert (status, read) == (401, 0)
    assert len(route_calls) == 2


def test_a_chunked_body_past_the_image_limit_is_cut_off(edge_loop, settings):
    settings.EDGE_MAX_IMAGE_BYTES = 1200
    device = device_client(edge_loop)
    headers = {
        "Host": "testserver",
        "Authorization": f"Bearer {device.raw_token}",
        "Content-Type": "image/png",
    }
    status, detail, read = _send_raw(headers, [b"\0" * 500] * 10, edge_loop.pk)
    assert status == 413 and "limit of 1,200" in detail
    assert read == 3  # stopped at the chunk that passed the limit
    services.flush_device_books()
    from apps.edge.models import EdgeDevice

    assert EdgeDevice.objects.get(token=device.token).errors == 1
