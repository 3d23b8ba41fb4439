"""The web server against clients that send their request headers slowly (slowloris): each
request's headers must be complete within REQUEST_HEADER_TIMEOUT_S of their first byte, or the
client gets 408 and its connection is closed. An idle keep-alive connection and a slow body are
not cut by it."""

import socket
import time

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
# A sign-in form post, for the tests that send a body slowly.
LOGIN_BODY = b"username=nobody&password=wrong"
LOGIN_HEAD = (
    "POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    f"Content-Length: {len(LOGIN_BODY)}\r\n\r\n"
).encode()


def read_response(sock) -> bytes:
    """One response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_headers_sent_a_byte_at_a_time_are_cut_off_with_408(web_server):
    port, _ = web_server(REQUEST_HEADER_TIMEOUT_S="2")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        answer = b""
        try:
            for byte in HEAD[:-2]:  # never the blank line that ends the headers
                sock.sendall(bytes([byte]))
                time.sleep(0.25)  # well under Twisted's idle timeout
                if time.monotonic() - started > 8:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(5)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.5 < elapsed < 8, elapsed


def test_a_keep_alive_connection_may_idle_between_requests(web_server):
    """The deadline counts from a request's first byte, not from the previous answer."""
    port, _ = web_server(REQUEST_HEADER_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEAD)
        assert read_response(sock).startswith(b"HTTP/1.1 ")
        time.sleep(2.5)
        sock.sendall(HEAD)
        second = read_response(sock)
    assert second.startswith(b"HTTP/1.1 ") and b" 408 " not in second.split(b"\r\n")[0]


def test_a_slow_body_is_not_cut_by_the_header_deadline(web_server):
    port, _ = web_server(REQUEST_HEADER_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(LOGIN_HEAD)
        for start in range(0, len(LOGIN_BODY), 10):
            sock.sendall(LOGIN_BODY[start : start + 10])
            time.sleep(0.8)  # 2.4 s in all: past the header deadline
        answer = read_response(sock)
    status = answer.split(b"\r\n")[0]
    assert b" 408 " not in status and status.startswith(b"HTTP/1.1 "), status


def test_a_pipelined_requests_slow_body_is_not_cut_either(web_server):
    """The second request's headers come with the first (read from Twisted's buffer, not as new
    data); its body then arrives slowly: that is the body's pace, not the headers'."""
    port, _ = web_server(REQUEST_HEADER_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(HEAD + LOGIN_HEAD)
        assert read_response(sock).startswith(b"HTTP/1.1 ")
        for start in range(0, len(LOGIN_BODY), 10):
            time.sleep(0.8)
            sock.sendall(LOGIN_BODY[start : start + 10])
        answer = read_response(sock)
    status = answer.split(b"\r\n")[0]
    assert b" 408 " not in status and status.startswith(b"HTTP/1.1 "), status
