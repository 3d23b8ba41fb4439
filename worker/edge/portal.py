"""The agent's side of the portal's edge API, over the standard library's HTTP client."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass


class PortalUnreachable(Exception):
    """No answer (network down, portal stopped, 5xx): try again later."""


class PortalRefused(Exception):
    """A 4xx answer: retrying the same request will not help (except 429, see retry_after)."""

    def __init__(self, code: int, message: str, retry_after: float | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retry_after = retry_after


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict

    def json(self):
        return json.loads(self.body or b"null")


class PortalClient:
    def __init__(self, portal_url: str, token: str, loop_id: int, timeout_s: float = 30.0):
        self.base = portal_url.rstrip("/")
        self.token = token
        self.loop_id = int(loop_id)
        self.timeout_s = timeout_s

    def url(self, tail: str) -> str:
        return f"{self.base}/api/v1/loops/{self.loop_id}/{tail}"

    def request(self, method, url, *, body=None, headers=None) -> Answer:
        headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            if exc.code == 304:
                return Answer(304, b"", dict(exc.headers))
            if exc.code >= 500:
                raise PortalUnreachable(f"{exc.code} from the portal") from exc
            try:
                message = json.loads(payload).get("detail", "")
            except ValueError:
                message = payload[:200].decode(errors="replace")
            retry_after = exc.headers.get("Retry-After")
            raise PortalRefused(
                exc.code, message, float(retry_after) if retry_after else None
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise PortalUnreachable(str(exc)) from exc

    def manifest(self, etag: str | None) -> tuple[dict | None, str | None]:
        """(manifest, etag), or (None, etag) when nothing changed since ``etag``."""
        headers = {"If-None-Match": etag} if etag else {}
        answer = self.request("GET", self.url("model/"), headers=headers)
        if answer.status == 304:
            return None, etag
        return answer.json(), answer.headers.get("ETag")

    def download(self, url: str, sha256: str, directory: str) -> str:
        """The file at ``url`` in ``directory``, checked against ``sha256`` (else refused)."""
        answer = self.request("GET", url)
        digest = hashlib.sha256(answer.body).hexdigest()
        if digest != sha256:
            raise ChecksumMismatch(
                f"downloaded file has sha256 {digest[:12]}…, expected {sha256[:12]}…"
            )
        handle, path = tempfile.mkstemp(dir=directory, suffix=".part")
        with os.fdopen(handle, "wb") as local:
            local.write(answer.body)
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
