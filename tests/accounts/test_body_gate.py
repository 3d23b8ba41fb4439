"""The body gate answers from the request line and headers alone: no body is read for a caller
who may not upload, nor for a body over the view's limit."""

import json

import pytest
from asgiref.sync import async_to_sync

from apps.accounts import services
from apps.accounts.body_gate import BodyGate
from tests.factories import DatasetFactory, UserFactory

pytestmark = pytest.mark.django_db


class BodyMustNotBeRead(AssertionError):
    pass


async def _forbidden_receive():
    raise BodyMustNotBeRead("the gate read the body")


class DjangoLikeApp:
    """Reads the body as Django's ASGI handler does, then answers 200 (or nothing if cut off)."""

    def __init__(self):
        self.called = False
        self.received = 0

    async def __call__(self, scope, receive, send):
        self.called = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            self.received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(path, *, headers=(), receive=_forbidden_receive, method="POST", app=None):
    app = app or DjangoLikeApp()
    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }
    async_to_sync(BodyGate(app))(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return app, (start or {}).get("status"), body


def _session_cookie(client, user) -> tuple[str, str]:
    client.force_login(user)
    return ("Cookie", f"sessionid={client.cookies['sessionid'].value}; csrftoken=x")


HUGE = ("Content-Length", str(500 * 1024**2))


@pytest.fixture
def dataset():
    return DatasetFactory()


def _upload_paths(dataset):
    return [
        f"/api/v1/datasets/{dataset.pk}/imports/",
        f"/api/v1/datasets/{dataset.pk}/samples/",
        f"/datasets/{dataset.pk}/upload/",
    ]


def test_anonymous_uploads_get_401_without_reading(dataset):
    for path in _upload_paths(dataset):
        app, status, body = _call(path, headers=[HUGE])
        assert (status, app.called) == (401, False), path
        assert "detail" in json.loads(body)


def test_a_bad_device_token_or_session_is_anonymous(dataset, client):
    for headers in (
        [("Authorization", "Bearer ilp_not-a-token"), HUGE],
        [("Authorization", "Bearer"), HUGE],
        [("Cookie", "sessionid=forged"), HUGE],
        [("Cookie", "\x00;;=="), HUGE],
    ):
        app, status, _ = _call(f"/api/v1/datasets/{dataset.pk}/imports/", headers=headers)
        assert (status, app.called) == (401, False), headers


def test_a_viewer_gets_403_without_reading(dataset, client):
    cookie = _session_cookie(client, UserFactory(role="viewer"))
    for path in _upload_paths(dataset):
        app, status, _ = _call(path, headers=[cookie, HUGE])
        assert (status, app.called) == (403, False), path


def test_model_archive_uploads_need_the_admin_permission(client):
    cookie = _session_cookie(client, UserFactory(role="labeler"))
    for path in ("/loops/new/", "/loops/1/versions/add/"):
        app, status, _ = _call(path, headers=[cookie, HUGE])
        assert (status, app.called) == (403, False), path


def test_a_labeler_may_upload(dataset, client, settings):
    cookie = _session_cookie(client, UserFactory(role="labeler"))
    for path in (f"/api/v1/datasets/{dataset.pk}/imports/", f"/datasets/{dataset.pk}/upload/"):
        app, status, _ = _call(
            path, headers=[cookie, HUGE], receive=_body_of(b"x"), app=DjangoLikeApp()
        )
        assert (status, app.called) == (200, True), path


def test_a_device_token_may_upload_within_its_scope(dataset):
    from apps.loops.services import create_loop

    issued = services.create_device_token(name="cam", created_by=None)
    headers = [("Authorization", f"Bearer {issued.raw_token}"), ("Content-Length", "1")]
    other = DatasetFactory()
    for path in ("imports", "samples"):
        app, status, _ = _call(f"/api/v1/datasets/{dataset.pk}/{path}/", headers=headers)
        assert (status, app.called) == (403, False)  # scoped to no loop yet
    issued.device_token.loops.add(create_loop(name="line-1", dataset=dataset))
    for path in ("imports", "samples"):
        url = f"/api/v1/datasets/{dataset.pk}/{path}/"
        app, status, _ = _call(url, headers=headers, receive=_body_of(b"x"))
        assert (status, app.called) == (200, True)
        app, status, _ = _call(f"/api/v1/datasets/{other.pk}/{path}/", headers=headers)
        assert (status, app.called) == (403, False)


def test_an_unscoped_device_token_may_upload_anywhere(dataset):
    issued = services.create_device_token(name="cam", created_by=None)
    issued.device_token.all_loops = True
    issued.device_token.save()
    app, status, _ = _call(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        headers=[("Authorization", f"Bearer {issued.raw_token}"), HUGE],
        receive=_body_of(b"x"),
    )
    assert (status, app.called) == (200, True)


def test_a_body_over_the_upload_limit_gets_413_at_once(dataset, client, settings):
    settings.DATASET_MAX_UPLOAD_BYTES = 1000
    cookie = _session_cookie(client, UserFactory(role="labeler"))
    app, status, body = _call(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        headers=[cookie, ("Content-Length", "1001")],
    )
    assert (status, app.called) == (413, False)
    assert "1,000 bytes" in json.loads(body)["detail"]


def test_a_sample_upload_is_limited_to_one_image(dataset, client, settings):
    settings.DATASET_MAX_IMAGE_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    cookie = _session_cookie(client, UserFactory(role="labeler"))
    path = f"/api/v1/datasets/{dataset.pk}/samples/"
    assert _call(path, headers=[cookie, ("Content-Length", "1101")])[1] == 413
    assert (
        _call(path, headers=[cookie, ("Content-Length", "1100")], receive=_body_of(b"x"))[1] == 200
    )


def test_edge_images_pass_the_gate_up_to_their_own_limits(dataset, client, settings):
    """Predict takes a batch of camera images, intake one: both far above the small limit."""
    from apps.loops.services import create_loop

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    settings.EDGE_MAX_IMAGE_BYTES = 1000
    settings.EDGE_MAX_BATCH = 4
    loop = create_loop(name="line-1", dataset=dataset)
    issued = services.create_device_token(name="cam", created_by=None)
    issued.device_token.loops.add(loop)
    device = ("Authorization", f"Bearer {issued.raw_token}")
    viewer = _session_cookie(client, UserFactory(role="viewer"))
    predict, intake = f"/api/v1/loops/{loop.pk}/predict/", f"/api/v1/loops/{loop.pk}/intake/"
    overhead = 1024**2
    for path, limit, callers in (
        (predict, 4 * 1000 + overhead, [device, viewer]),
        (intake, 1000 + overhead, [device]),
    ):
        for caller in callers:
            fits = [caller, ("Content-Length", str(limit))]
            app, status, _ = _call(path, headers=fits, receive=_body_of(b"x"))
            assert (status, app.called) == (200, True), (path, caller[0])
            too_big = [caller, ("Content-Length", str(limit + 1))]
            assert _call(path, headers=too_big)[1] == 413, (path, caller[0])
    other_loop = create_loop(name="line-2", dataset=DatasetFactory())
    app, status, _ = _call(f"/api/v1/loops/{other_loop.pk}/predict/", headers=[device, HUGE])
    assert (status, app.called) == (403, False)
    assert _call(predict, headers=[HUGE])[1] == 401


@pytest.mark.parametrize("path", ["/api/v1/datasets/", "/login/", "/no/such/page/"])
def test_other_views_take_only_small_bodies(path, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    app, status, _ = _call(path, headers=[("Content-Length", "1001")])
    assert (status, app.called) == (413, False)
    app, status, _ = _call(path, headers=[("Content-Length", "999")], receive=_body_of(b"x"))
    assert (status, app.called) == (200, True)


def test_a_chunked_body_is_cut_off_past_the_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    chunks = [b"x" * 400] * 10  # 4,000 bytes, no Content-Length
    app, status, body = _call("/api/v1/datasets/", receive=_body_of(*chunks))
    assert status == 413
    assert app.received <= 1000
    app, status, _ = _call("/api/v1/datasets/", receive=_body_of(b"x" * 400, b"x" * 400))
    assert (status, app.received) == (200, 800)


def test_a_malformed_content_length_is_refused():
    app, status, _ = _call("/api/v1/datasets/", headers=[("Content-Length", "12abc")])
    assert (status, app.called) == (413, False)


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_other_methods_take_only_small_bodies_even_on_upload_paths(dataset, method, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    path = f"/api/v1/datasets/{dataset.pk}/imports/"
    app, status, _ = _call(path, method=method, headers=[("Content-Length", "1001")])
    assert (status, app.called) == (413, False)


def test_reads_pass_untouched(dataset):
    app, status, _ = _call(f"/datasets/{dataset.pk}/", method="GET", receive=_body_of(b""))
    assert (status, app.called) == (200, True)


def _body_of(*chunks):
    pending = list(chunks)

    async def receive():
        if not pending:
            return {"type": "http.disconnect"}
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return receive
