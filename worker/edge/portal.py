"""The agent's side of the portal's edge API, over the standard library's HTTP client.

Every failure of one request is one of two exceptions, never anything else: ``PortalUnreachable``
(try again later: no answer, a 5xx, a broken or unreadable answer, an answer that is not the
portal's JSON, a request past its total deadline) or ``PortalRefused`` (a 4xx from the portal).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

CHUNK = 64 * 1024
MAX_RETRY_AFTER_S = 3600.0
MAX_JSON_BYTES = 16 * 1024**2
MAX_MODEL_BYTES = 2 * 1024**3  # when the manifest gives no size


class PortalUnreachable(Exception):
    """No usable answer (network down, portal stopped, 5xx, a broken answer): try again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PortalRefused(Exception):
    """A 4xx answer. ``from_portal``: the body was the portal's JSON error (with a `detail`),
    not a page from a proxy in between; ``retry_after`` from the Retry-After header."""

    def __init__(
        self,
        code: int,
        message: str,
        retry_after: float | None = None,
        from_portal: bool = False,
    ):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after = retry_after
        self.from_portal = from_portal


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict

    def json(self):
        """The body as JSON; a 2xx that is not JSON (a captive portal's page, a proxy's error
        page) is not the portal's answer: PortalUnreachable."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            start = self.body[:60].decode(errors="replace")
            raise PortalUnreachable(
                f"{self.status} answer is not JSON (a proxy or captive portal?): {start!r}"
            ) from exc


def parse_retry_after(value, sent_at=None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110, 10.2.3).
    None when absent or invalid; at most an hour.

    An HTTP-date is counted from ``sent_at``, the answer's own Date header, when it has one:
    an edge device's clock is often far off (no battery-backed clock, no NTP yet), and counted
    from it, a date a minute ahead on the server's clock meant an hour's wait (the cap) on a
    device running behind, or none on one running ahead."""
    if not value:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        now = _http_date(sent_at)
        seconds = when - (now if now is not None else time.time())
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _http_date(value) -> float | None:
    """A timestamp from an HTTP-date with its zone; None for anything else."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(str(value).strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return when.timestamp()


def _origin(url: str) -> tuple:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:  # a port that is not a number: no origin anyone shares
        port = url
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, but sends the device token only to the origin it was meant for:
    urllib copies every header into the redirected request, whatever its host (a redirect to
    another host, or from https to http, handed the token over)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


_opener = urllib.request.build_opener(_SameOriginRedirects)


class PortalClient:
    """``timeout_s`` bounds each socket operation; ``deadline_s`` (default 3 × timeout_s) the
    whole of one API request, and ``download_deadline_s`` the whole of one model download (so a
    portal that trickles one byte at a time cannot hold the agent)."""

    def __init__(
        self,
        portal_url: str,
        token: str,
        loop_id: int,
        timeout_s: float = 30.0,
        deadline_s: float | None = None,
        download_deadline_s: float = 600.0,
    ):
        self.base = portal_url.rstrip("/")
        self.token = token
        self.loop_id = int(loop_id)
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s if deadline_s is not None else 3 * timeout_s
        self.download_deadline_s = download_deadline_s

    def url(self, tail: str) -> str:
        return f"{self.base}/api/v1/loops/{self.loop_id}/{tail}"

    def on_portal(self, url: str) -> str:
        """A URL the portal gave (the manifest's files), on the portal this agent was given.

        The portal builds it from the Host it was asked by, which a proxy in between may have
        changed (an internal name, http behind TLS): the path and query are the portal's, the
        scheme and host are the ones this agent trusts with its token."""
        base = urlsplit(self.base)
        parts = urlsplit(urljoin(self.base + "/", url))
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))

    def request(self, method, url, *, body=None, headers=None, sink=None, limit=None) -> Answer:
        """One request. A 2xx body goes to ``sink`` (a callable taking chunks) if given, else
        into ``Answer.body`` (at most ``limit`` bytes either way)."""
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        deadline = time.monotonic() + (self.download_deadline_s if sink else self.deadline_s)
        limit = limit or MAX_JSON_BYTES
        try:
            request = urllib.request.Request(url, data=body, method=method, headers=headers)
            with _opener.open(request, timeout=self.timeout_s) as response:
                data = _read(response, deadline, limit, sink)
                return Answer(response.status, data, dict(response.headers))
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    payload = _read(exc, deadline, 64 * 1024, None)
                except (PortalUnreachable, http.client.HTTPException, OSError, ValueError):
                    payload = b""  # the status says enough
            retry_after = parse_retry_after(
                exc.headers.get("Retry-After"), sent_at=exc.headers.get("Date")
            )
            if exc.code == 304:
                return Answer(304, b"", dict(exc.headers))
            if exc.code >= 500 or exc.code < 400:
                raise PortalUnreachable(
                    f"{exc.code} from the portal", retry_after=retry_after
                ) from exc
            message, from_portal = _detail(payload)
            raise PortalRefused(exc.code, message, retry_after, from_portal) from exc
        except PortalUnreachable:
            raise
        except (http.client.HTTPException, urllib.error.URLError, OSError, ValueError) as exc:
            # BadStatusLine, IncompleteRead, LineTooLong, RemoteDisconnected, refused, reset,
            # timeouts, a malformed header: all mean "no usable answer this time".
            raise PortalUnreachable(f"{type(exc).__name__}: {exc}") from exc

    def manifest(self, etag: str | None) -> tuple[dict | None, str | None]:
        """(manifest, etag), or (None, etag) when nothing changed since ``etag``."""
        headers = {"If-None-Match": etag} if etag else {}
        answer = self.request("GET", self.url("model/"), headers=headers)
        if answer.status == 304:
            return None, etag
        manifest = answer.json()
        if not isinstance(manifest, dict) or not isinstance(manifest.get("version"), dict):
            raise PortalUnreachable(f"{answer.status} answer is not a model manifest")
        return manifest, answer.headers.get("ETag")

    def download(self, url: str, sha256: str, directory: str, size: int | None = None) -> str:
        """The file at ``url`` in ``directory``, checked against ``sha256`` (else refused).

        Streamed to a ``.part`` file (removed on any failure), within ``download_deadline_s``
        and at most ``size`` bytes (the manifest's) or MAX_MODEL_BYTES. ``url`` is fetched
        from this client's portal (``on_portal``): the token never goes to a host a manifest
        names."""
        limit = int(size) if size else MAX_MODEL_BYTES
        url = self.on_portal(url)
        digest = hashlib.sha256()
        handle, path = tempfile.mkstemp(dir=directory, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as local:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    local.write(chunk)

                self.request("GET", url, sink=sink, limit=limit)
                local.flush()
                os.fsync(local.fileno())
            if digest.hexdigest() != sha256:
                raise ChecksumMismatch(
                    f"downloaded file has sha256 {digest.hexdigest()[:12]}…, "
                    f"expected {sha256[:12]}…"
                )
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(path)
            raise
        return path

    def upload(self, image: bytes, name: str, detection: dict, version_id, key: str) -> dict:
        fields = {"detection": json.dumps(detection), "version": str(version_id or "")}
        body, content_type = _multipart(fields, ("image", name, image))
        answer = self.request(
            "POST",
            self.url("intake/"),
            body=body,
            headers={"Content-Type": content_type, "Idempotency-Key": key},
        )
        return answer.json()

    def heartbeat(self, version_id, health: dict) -> None:
        body = json.dumps({"version": version_id, "health": health}).encode()
        self.request(
            "POST",
            self.url("heartbeat/"),
            body=body,
            headers={"Content-Type": "application/json"},
        )


class ChecksumMismatch(Exception):
    pass


def _read(response, deadline: float, limit: int, sink) -> bytes:
    """The body, one socket read at a time (``read1``), so that the total deadline holds even
    when each read returns a single byte just within the socket timeout."""
    parts = []
    total = 0
    while True:
        if time.monotonic() > deadline:
            raise PortalUnreachable("the answer took longer than the deadline (too slow)")
        chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            if sink is not None:
                raise ChecksumMismatch(f"the file is larger than the {limit:,} bytes announced")
            raise PortalUnreachable(f"the answer is larger than {limit:,} bytes")
        if sink is not None:
            sink(chunk)
        else:
            parts.append(chunk)
    length = response.headers.get("Content-Length") if response.headers else None
    if length and length.isdigit() and int(length) != total:
        raise PortalUnreachable(f"the answer was cut: {total} of {length} bytes")
    return b"".join(parts)


def _detail(payload: bytes) -> tuple[str, bool]:
    """The portal's `detail`, and whether the body was the portal's JSON error at all."""
    try:
        parsed = json.loads(payload)
    except ValueError:
        return payload[:200].decode(errors="replace"), False
    if isinstance(parsed, dict) and "detail" in parsed:
        return str(parsed["detail"])[:500], True
    return payload[:200].decode(errors="replace"), False


def _multipart(fields: dict, file_part: tuple[str, str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    lines = []
    for name, value in fields.items():
        header = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        lines.append(f"{header}{value}\r\n".encode())
    field, filename, data = file_part
    safe_name = filename.replace('"', "_")
    lines.append(
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{safe_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + b"\r\n"
    )
    lines.append(f"--{boundary}--\r\n".encode())
    return b"".join(lines), f"multipart/form-data; boundary={boundary}"
