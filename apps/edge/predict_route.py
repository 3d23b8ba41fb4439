"""The predict request of a device, answered in front of Django's request cycle.

Measured with bench/inference_api.py: Django's handler, its middleware and DRF added a nearly
constant 5-6 ms to a predict request whose model takes 6-8 ms, which made the API 1.6-1.9x slower
than the same runner in-process. The commonest edge request (a device token, one image as the raw
body) is answered here instead, with the same code the REST view uses (apps.edge.prediction) and
so the same answers, statuses and bookkeeping. A small body takes one hop to Django's sync thread;
a large one two (the checks before its body is read, then the image: `_read_before_admission`).

Everything else goes on to Django unchanged: multipart and batches, people signed in with a
session (CSRF applies to them), requests whose Host Django would refuse or whose Accept asks for
something other than JSON, deployments with HSTS or a proxy's TLS header (Django's security
middleware answers those), and any other path.
"""

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from rest_framework.renderers import JSONRenderer

from apps.accounts.api_auth import DevicePrincipal
from apps.accounts.body_gate import close_stale_connection
from apps.accounts.services import authenticate_device_token
from apps.edge import prediction
from apps.edge.prediction import RequestRejected
from apps.ops.middleware import RETRY_AFTER_S, describe_outage

logger = logging.getLogger(__name__)

# At most 18 digits: a longer id is no loop's (Django answers 404), and int() of thousands of
# digits raises.
PREDICT_PATH = re.compile(r"/api/v1/loops/(?P<loop_id>[0-9]{1,18})/predict/")
FORM_TYPES = ("multipart/", "application/x-www-form-urlencoded")
# The headers this route decides by. Django joins a repeated header with commas (two
# Authorization headers are "Bearer a,Bearer b": a 401), so a request that repeats one of them
# goes on to Django; the route, taking the first, answered it as device a.
READ_HEADERS = frozenset({"authorization", "content-type", "content-length", "host", "accept"})
JSON_RANGES = frozenset({"*/*", "application/*", "application/json"})


@dataclass(frozen=True)
class RawPredict:
    loop_id: int
    token: str
    name: str
    content_length: int | None


def raw_device_predict(scope) -> RawPredict | None:
    """The request, when it is one this route answers; None sends it on to Django."""
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    match = PREDICT_PATH.fullmatch(scope["path"])
    if match is None:
        return None
    headers = {}
    for name, value in scope["headers"]:
        name = name.decode("latin-1").lower()
        if name in headers and name in READ_HEADERS:
            return None
        headers[name] = value.decode("latin-1")
    authorization = headers.get("authorization", "").split()
    if len(authorization) != 2 or authorization[0].lower() != "bearer":
        return None
    if headers.get("content-type", "").lower().startswith(FORM_TYPES):
        return None
    if not (_host_allowed(headers.get("host")) and _accepts_json(headers.get("accept", ""))):
        return None
    if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https":
        return None
    # HSTS and a proxy's TLS header change what Django's security middleware answers (it reads
    # the header to decide whether the request is secure): Django answers those deployments.
    if settings.SECURE_HSTS_SECONDS or settings.SECURE_PROXY_SSL_HEADER:
        return None
    length = headers.get("content-length") or ""
    # isascii: "²" is a digit to Python and latin-1 to HTTP, but int() refuses it.
    declared = int(length) if length.isascii() and length.isdigit() else None
    names = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("name")
    return RawPredict(
        loop_id=int(match["loop_id"]),
        token=authorization[1],
        name=names[-1] if names else "device-image",
        content_length=declared,
    )


def _host_allowed(host: str | None) -> bool:
    """Django's own Host check (it answers 400 to the others, so they go on to it)."""
    if not host or settings.USE_X_FORWARDED_HOST:
        return False
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _accepts_json(accept: str) -> bool:
    ranges = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    ranges.discard("")
    return not ranges or bool(ranges & JSON_RANGES)


class PredictRoute:
    """ASGI middleware: answers `raw_device_predict` requests, passes on everything else."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        request = raw_device_predict(scope)
        if request is None:
            return await self.app(scope, receive, send)
        await _answer(request, receive, send)


async def _answer(request: RawPredict, receive, send) -> None:
    device = None
    body_read = False
    try:
        read_first = _read_before_admission(request)
        if not read_first:
            user, loop, device = await sync_to_async(_admit)(request)
        data = await _read_body(request, receive)
        body_read = True
        if data is None:
            return  # the client went away
        if read_first:
            answer = await sync_to_async(_admit_and_predict)(request, data)
        else:
            answer = await sync_to_async(_predict)(user, loop, device, request.name, data)
    except RequestRejected as exc:
        if device is not None and not body_read:
            await sync_to_async(_count_error)(device, exc)
        # An unread body is not worth keeping the connection for.
        await _send(send, exc.code, {"detail": str(exc)}, exc.headers, close=not body_read)
        return
    except Exception as exc:
        reason = describe_outage(exc)
        if reason is None:
            logger.exception("predict request for loop %s failed", request.loop_id)
            await _send(send, 500, {"detail": "Server error."}, close=not body_read)
        else:
            logger.warning("predict request for loop %s: %s", request.loop_id, reason)
            await _send(
                send, 503, {"detail": reason}, {"Retry-After": RETRY_AFTER_S}, close=not body_read
            )
        return
    await _send(send, 200, answer)


def _read_before_admission(request: RawPredict) -> bool:
    """A body no larger than Django reads from anyone (DATA_UPLOAD_MAX_MEMORY_SIZE, which
    apps.accounts.body_gate lets through before the caller is known) is read first, so that the
    whole answer takes one hop to the sync thread instead of two; a larger one only after the
    token, scope and rate are checked."""
    small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    length = request.content_length
    return length is not None and length <= min(small, settings.EDGE_MAX_IMAGE_BYTES)


def _admit(request: RawPredict):
    close_stale_connection()
    try:
        token = authenticate_device_token(request.token)
        if token is None:
            raise RequestRejected(
                401, "Unknown or revoked device token.", {"WWW-Authenticate": "Bearer"}
            )
        user = DevicePrincipal(token)
        loop, device = prediction.admit(user, request.loop_id)
        if request.content_length is not None:
            with prediction.errors_counted(device):
                prediction.check_raw_length(request.content_length)
    except BaseException:
        close_stale_connection()
        raise
    return user, loop, device


def _admit_and_predict(request: RawPredict, data: bytes) -> dict:
    return _predict(*_admit(request), request.name, data)


def _count_error(device, exc: RequestRejected) -> None:
    try:
        prediction.count_error(device, exc)
    finally:
        close_stale_connection()


async def _read_body(request: RawPredict, receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        prediction.check_raw_size(size)  # a chunked body: no length was announced
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _predict(user, loop, device, name: str, data: bytes) -> dict:
    try:
        with prediction.errors_counted(device):
            prediction.check_raw_body(data)
        return prediction.predict(user, loop, device, [(name, data)], batch=False)
    finally:
        close_stale_connection()


def _security_headers() -> list[tuple[bytes, bytes]]:
    """What Django's security and clickjacking middleware add to the REST view's answers."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        if not isinstance(policy, str):
            policy = ",".join(policy)
        headers.append((b"referrer-policy", policy.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(
            (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())
        )
    headers.append((b"x-frame-options", settings.X_FRAME_OPTIONS.encode()))
    return headers


async def _send(send, status: int, body: dict, extra: dict | None = None, *, close=False) -> None:
    payload = JSONRenderer().render(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"vary", b"Accept, Cookie"),  # as the REST view's (DRF, then the session middleware)
        (b"allow", b"POST, OPTIONS"),
        *_security_headers(),
        *((name.lower().encode(), value.encode()) for name, value in (extra or {}).items()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
