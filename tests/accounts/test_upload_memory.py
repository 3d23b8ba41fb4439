"""Large request bodies against the real ASGI server process: refused callers cost no memory, and
an allowed upload streams to storage in bounded memory. The client streams its body from a
generator, so the test itself never holds it either."""

import contextlib
import http.client
import socket
import threading
import time

import psutil
import pytest

from tests.factories import DatasetFactory, UserFactory

MB = 1024 * 1024
BOUNDARY = "ilportal-test-boundary"
CSRF = "a" * 32


FORM_FIELDS = {"format": "auto", "unknown_classes": "reject"}  # what the upload page sends


def _multipart_parts(size: int, field: str = "files"):
    fields = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in FORM_FIELDS.items()
    )
    head = (
        f'{fields}--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
        'filename="big.zip"\r\nContent-Type: application/zip\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail


def _post_streamed(port: int, path: str, size: int, headers=None) -> tuple[int, bytes]:
    head, tail = _multipart_parts(size)

    def body():
        yield head
        block = b"\0" * MB
        for _ in range(size // MB):
            yield block
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request(
        "POST",
        path,
        body=body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + size + len(tail)),
            "Accept": "application/json",
            **(headers or {}),
        },
    )
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


class PeakRss:
    """The highest resident memory of a process while the block runs, sampled every 10 ms."""

    def __init__(self, process: psutil.Process):
        self.process = process

    def __enter__(self):
        self.base = self.peak = self.process.memory_info().rss
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while self._running:
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MB


def _warm_up(port: int, dataset_id: int) -> None:
    """One small request of each kind, so that lazy imports are not counted as growth."""
    for path in (f"/api/v1/datasets/{dataset_id}/imports/", f"/datasets/{dataset_id}/upload/"):
        _post_streamed(port, path, MB)


def _session_headers(client, user) -> dict:
    client.force_login(user)
    session = client.cookies["sessionid"].value
    return {"Cookie": f"sessionid={session}; csrftoken={CSRF}", "X-CSRFToken": CSRF}


@pytest.mark.slow
def test_500_mb_from_an_anonymous_caller_costs_no_memory(web_server):
    dataset = DatasetFactory()
    port, process = web_server()
    _warm_up(port, dataset.pk)
    for path in (f"/api/v1/datasets/{dataset.pk}/imports/", f"/datasets/{dataset.pk}/upload/"):
        head, tail = _multipart_parts(500 * MB)
        request = _upload_head(
            path, len(head) + 500 * MB + len(tail), f"Cookie: csrftoken={CSRF}\r\n"
        )
        with (
            PeakRss(process) as rss,
            socket.create_connection(("127.0.0.1", port), timeout=60) as sock,
        ):
            sock.sendall(request)
            answer = sock.recv(4096)  # from the headers alone: the body is never read
        assert answer.startswith(b"HTTP/1.1 401 "), (path, answer[:200])
        assert rss.growth_mb < 100, f"{path}: the web process grew by {rss.growth_mb:.0f} MB"


@pytest.mark.slow
def test_500_mb_from_a_labeler_streams_to_storage(web_server, client, settings):
    from apps.jobs.models import Job

    dataset = DatasetFactory()
    port, process = web_server()
    _warm_up(port, dataset.pk)
    headers = _session_headers(client, UserFactory(role="labeler"))
    # The API, and the upload page (where Django's CSRF check parses the multipart body).
    for path, accepted in (("/api/v1/datasets/{}/imports/", 202), ("/datasets/{}/upload/", 200)):
        with PeakRss(process) as rss:
            status, body = _post_streamed(port, path.format(dataset.pk), 500 * MB, headers=headers)
        assert status == accepted, body
        assert rss.growth_mb < 100, f"{path}: the web process grew by {rss.growth_mb:.0f} MB"
    assert Job.objects.filter(kind="dataset_import").count() == 2
    staged_files = [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
    assert [p.stat().st_size for p in staged_files] == [500 * MB] * 2


def test_the_server_refuses_an_announced_oversize_body_before_it_is_sent(web_server):
    port, _ = web_server(REQUEST_MAX_BODY_BYTES=str(MB))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/datasets/1/imports/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (2 * MB)
        )
        answer = sock.recv(4096)  # no body sent: the answer comes from the headers alone
    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize(
    "server_limit",
    [str(MB), None],
    ids=["past-the-servers-limit", "past-the-views-own-limit"],
)
def test_the_server_cuts_off_a_chunked_body_past_the_limit(web_server, server_limit):
    """4 MB, never finished: past REQUEST_MAX_BODY_BYTES (1 MB here), and past the view's own
    limit (a view that reads bodies into memory takes DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB) when
    the server's is far larger."""
    port, _ = web_server(**({"REQUEST_MAX_BODY_BYTES": server_limit} if server_limit else {}))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        with contextlib.suppress(OSError):  # the server closes the connection mid-upload
            for _ in range(64):
                sock.sendall(chunk)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def _send_headers_and_read(port: int, head: bytes, timeout: float = 10) -> bytes:
    """Sends a request's headers only; what the server answers before any of the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        return sock.recv(4096)


def _upload_head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "credentials",
    ["", "Authorization: Bearer ilp_not-a-token\r\n", "Cookie: sessionid=forged\r\n"],
    ids=["anonymous", "unknown-token", "forged-session"],
)
def test_a_caller_who_may_not_upload_is_refused_from_the_headers_alone(web_server, credentials):
    """No body is sent: the server must answer without waiting for one (it used to spool all of
    it first, so an anonymous client could fill the disk), and must not invite it with a 100."""
    dataset = DatasetFactory()
    port, _ = web_server()
    path = f"/api/v1/datasets/{dataset.pk}/imports/"
    answer = _send_headers_and_read(port, _upload_head(path, 50 * MB, credentials))
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"Log in" in answer
    expecting = _send_headers_and_read(
        port, _upload_head(path, 50 * MB, credentials + "Expect: 100-continue\r\n")
    )
    assert expecting.startswith(b"HTTP/1.1 401 "), expecting[:200]


def test_an_admitted_large_upload_gets_its_100_continue_and_goes_through(web_server, client):
    dataset = DatasetFactory()
    port, _ = web_server()
    session = _session_headers(client, UserFactory(role="labeler"))
    size = 3 * MB  # above Django's in-memory limit: decided at the headers
    head, tail = _multipart_parts(size)
    cookies = "".join(f"{name}: {value}\r\n" for name, value in session.items())
    request = _upload_head(
        f"/api/v1/datasets/{dataset.pk}/imports/",
        len(head) + size + len(tail),
        cookies + "Expect: 100-continue\r\n",
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(head + b"\0" * size + tail)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 202 "), answer[:300]
