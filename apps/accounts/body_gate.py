"""Who may send a large request body, decided before anything reads it.

Django's ASGI handler reads the whole body before any middleware runs, and its CSRF middleware
parses a multipart body to find the token; DRF authenticates only inside the view. So a large
upload from anyone at all used to be read and parsed before the answer "401". `BodyGate` wraps the
ASGI application and looks only at the request line and headers:

- a view that accepts large bodies says so with `@accepts_large_body(permission, limit)` (or a
  `large_body` attribute on a class-based view); the caller is identified from the session cookie
  or the device token, and one who is not logged in gets 401, one without the permission (or a
  device token outside its scope: `dataset_id` / `loop_id` in the URL) 403;
- every other view takes at most `DATA_UPLOAD_MAX_MEMORY_SIZE` bytes;
- a body over the view's limit gets 413: at once when Content-Length says so, or as soon as the
  count of a chunked body passes it.

None of these answers reads the body. The views still check their permissions as before: the gate
only keeps the body from being read for a request the view would refuse anyway.
"""

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from types import SimpleNamespace

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.db import close_old_connections, connection
from django.urls import Resolver404, resolve

LARGE_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # others take at most the small limit


@dataclass(frozen=True)
class LargeBody:
    # e.g. "datasets.add_sample"; a tuple when any one of several permissions will do
    permission: str | tuple[str, ...]
    # The name of the setting that holds the limit in bytes, or a function that computes it;
    # read per request, so that a changed setting applies at once.
    limit_from: str | Callable[[], int]

    @property
    def limit(self) -> int:
        if callable(self.limit_from):
            return self.limit_from()
        return getattr(settings, self.limit_from)


def accepts_large_body(permission: str | tuple[str, ...], limit_from: str | Callable[[], int]):
    """Marks a function view as an upload endpoint (class-based views set `large_body`)."""

    def mark(view):
        view.large_body = LargeBody(permission, limit_from)
        return view

    return mark


def large_body_of(view) -> LargeBody | None:
    declared = getattr(view, "large_body", None)
    if declared is None:
        declared = getattr(getattr(view, "view_class", None), "large_body", None)
    return declared


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def _headers(scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _caller(headers: dict[str, str]):
    """The user the session cookie or device token names (AnonymousUser if none)."""
    from apps.accounts.api_auth import DevicePrincipal
    from apps.accounts.services import authenticate_device_token

    authorization = headers.get("authorization", "").split()
    if authorization and authorization[0].lower() == "bearer":
        token = authenticate_device_token(authorization[1]) if len(authorization) == 2 else None
        return DevicePrincipal(token) if token is not None else auth.models.AnonymousUser()
    cookies = SimpleCookie()
    try:
        cookies.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no login
        return auth.models.AnonymousUser()
    morsel = cookies.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return auth.models.AnonymousUser()
    from importlib import import_module

    session = import_module(settings.SESSION_ENGINE).SessionStore(morsel.value)
    return auth.get_user(SimpleNamespace(session=session))


def _refusal_for(declared: LargeBody, headers: dict[str, str], url_kwargs: dict) -> Refusal | None:
    close_stale_connection()
    try:
        return _check_caller(declared, headers, url_kwargs)
    finally:
        close_stale_connection()


def close_stale_connection() -> None:
    """What Django's request cycle does at each end of a request, for code that runs outside it:
    closes a connection that is broken or past CONN_MAX_AGE (never inside a test's transaction)."""
    if not connection.in_atomic_block:
        close_old_connections()


def _check_caller(declared: LargeBody, headers: dict[str, str], url_kwargs: dict):
    from apps.accounts.api_auth import is_device

    user = _caller(headers)
    if not user.is_authenticated:
        return Refusal(401, "Log in (or send a device token) before uploading.")
    wanted = (declared.permission,) if isinstance(declared.permission, str) else declared.permission
    if not any(user.has_perm(permission) for permission in wanted):
        return Refusal(403, "Your role may not upload here.")
    missing = _missing_object(url_kwargs)
    if missing is not None:  # the view's own answer, without reading the body
        return Refusal(404, f"No {missing} matches the given query.")
    if is_device(user) and not _device_may_use(user.token, url_kwargs):
        return Refusal(403, "This device token is not scoped to this dataset or loop.")
    return None


def _missing_object(url_kwargs: dict) -> str | None:
    """The model name of a dataset or loop in the URL that does not exist."""
    from apps.datasets.models import Dataset
    from apps.loops.models import Loop

    for key, model in (("dataset_id", Dataset), ("loop_id", Loop)):
        if key in url_kwargs:
            value = str(url_kwargs[key])
            # A longer id fits no database integer (and int() of thousands of digits is slow).
            if len(value) > 18 or not model.objects.filter(pk=int(value)).exists():
                return model.__name__
    return None


def _device_may_use(token, url_kwargs: dict) -> bool:
    """A device token uploads only to the datasets and loops of its scope."""
    if "dataset_id" in url_kwargs and not token.may_use_dataset(int(url_kwargs["dataset_id"])):
        return False
    return "loop_id" not in url_kwargs or token.may_use_loop(int(url_kwargs["loop_id"]))


def _declared(method: str, path: str) -> tuple[LargeBody | None, dict]:
    if method in LARGE_BODY_METHODS:
        with contextlib.suppress(Resolver404):  # no such page: Django answers 404
            match = resolve(path)
            return large_body_of(match.func), match.kwargs
    return None, {}


def _small_limit() -> int:
    """Django's own limit for a body read into memory (None: no limit but the server's)."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or settings.REQUEST_MAX_BODY_BYTES


def admission(method: str, path: str, headers: dict[str, str]) -> tuple[Refusal | None, int]:
    """The gate's decision from the request line and headers: a refusal, or None and the most
    bytes the body may have. Reads the database for an upload view: call it from a thread. The
    web server (ilportal/webserver.py) asks this as soon as the headers are in, before it reads
    a large body; `BodyGate` decides the same for any other ASGI server."""
    declared, url_kwargs = _declared(method, path)
    if declared is None:
        return None, _small_limit()
    return _refusal_for(declared, headers, url_kwargs), declared.limit


class BodyGate:
    """ASGI middleware in front of Django (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        declared, url_kwargs = _declared(scope["method"], scope["path"])
        if declared is not None:
            refusal = await sync_to_async(_refusal_for)(declared, headers, url_kwargs)
            if refusal is not None:
                return await _answer(scope, send, refusal)
            limit = declared.limit
        else:
            limit = _small_limit()
        length = headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()) or int(length) > limit:
                return await _answer(scope, send, too_large(limit))
            return await self.app(scope, receive, send)
        return await self._counted(scope, receive, send, limit)

    async def _counted(self, scope, receive, send, limit: int):
        """A body of unannounced length: counted as it is read, cut off past the limit."""
        received = 0
        over = False
        started = False

        async def counting_receive():
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    return {"type": "http.disconnect"}  # Django stops reading and answers nothing
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, watching_send)
        if over and not started:
            await _answer(scope, send, too_large(limit))


def too_large(limit: int) -> Refusal:
    return Refusal(413, f"The request body is larger than this address accepts ({limit:,} bytes).")


def refusal_response(path: str, refusal: Refusal) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and JSON body of a refusal (the web server writes the same ones itself)."""
    body = {"detail": refusal.message}
    if not path.startswith("/api/"):
        body["errors"] = [refusal.message]  # what the upload page's script shows
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),  # the unread body is not worth keeping the connection for
    ]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    return headers, payload


async def _answer(scope, send, refusal: Refusal) -> None:
    headers, payload = refusal_response(scope["path"], refusal)
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
