"""Daphne, told not to hold request bodies in memory and not to wait forever for a request's
headers (`install()` runs from ilportal/asgi.py).

Measured with a 100 MB multipart POST that the application refuses without reading: stock daphne
grows by 1.2 GB before the application is even called, for two reasons fixed here.

- Twisted's Request parses every multipart/form-data POST into `request.args` with the email
  package (about 10 copies of the body in memory), for daphne, which never reads `args`.
  `BoundedWebRequest` turns that parsing off.
- daphne then puts the whole body into the application's input queue at once, in 8 KiB chunks
  (one more copy). `BoundedServer` gives each application a queue that keeps only where each chunk
  lies in Twisted's spool file (a temporary file on disk above 100 kB) and reads it when the
  application asks for it.

A body larger than `REQUEST_MAX_BODY_BYTES` is refused with 413 as soon as its Content-Length is
known. Who may send a large body (above Django's in-memory limit, or chunked) to which view is
decided as soon as the headers are in, by apps.accounts.body_gate, while the connection is paused:
daphne calls the application only once the whole body has arrived, so an answer from the
application would come after the server had spooled the body of anyone at all (an anonymous
client could make it write gigabytes to disk). A refused caller gets its 401/403/413 before one
more byte is read, and no `100 Continue`; an admitted chunked body is cut off with 413 as soon as
its count passes the view's limit.
"""

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from urllib.parse import unquote

import daphne.cli
import daphne.http_protocol
from asgiref.sync import sync_to_async
from daphne.http_protocol import WebRequest
from daphne.server import Server
from django.conf import settings
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol

from apps.accounts import body_gate

logger = logging.getLogger(__name__)


def _http_response(path: str, refusal: body_gate.Refusal) -> bytes:
    headers, payload = body_gate.refusal_response(path, refusal)
    status = HTTPStatus(refusal.status)
    lines = [f"HTTP/1.1 {status.value} {status.phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class BoundedWebRequest(WebRequest):
    _refused = False
    _received = 0
    _limit: int | None = None  # the view's limit, once the headers were admitted
    _admitting = False  # the gate is deciding; the connection is paused meanwhile
    _held: tuple | None = None  # requestReceived's arguments, if the body ended meanwhile
    _expects_continue = False
    _path = "/"

    def __init__(self, *args, **kwargs):
        # Twisted's in-memory parsing of form bodies into `args`, which daphne never reads.
        super().__init__(*args, **{**kwargs, "parsePOSTFormSubmission": False})

    def gotLength(self, length):
        super().gotLength(length)
        target = self.channel._path.split(b"?", 1)[0]  # noqa: SLF001 (the request line, parsed)
        self._path = unquote(target.decode("latin-1"))
        if length is not None and length > settings.REQUEST_MAX_BODY_BYTES:
            self._refuse(body_gate.too_large(settings.REQUEST_MAX_BODY_BYTES))
            return
        method = self.channel._command.decode("latin-1")  # noqa: SLF001
        small = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
        large = length is None or length > small  # None: chunked
        if method in body_gate.LARGE_BODY_METHODS and large and target.startswith(b"/"):
            self._admit(method, length)

    def _admit(self, method: str, length: int | None) -> None:
        """Pause the connection and ask the gate; `_admitted` resumes or refuses."""
        headers = {
            name.decode("latin-1").lower(): values[-1].decode("latin-1")
            for name, values in self.requestHeaders.getAllRawHeaders()
        }
        expect = self.requestHeaders.getRawHeaders(b"expect")
        if expect:  # Twisted would answer "100 Continue" right after this method returns
            self.requestHeaders.removeHeader(b"expect")
            self._expects_continue = expect[0].lower() == b"100-continue"
        self._admitting = True
        self.channel.transport.pauseProducing()
        asyncio.ensure_future(self._admitted(method, headers, length))

    async def _admitted(self, method: str, headers: dict, length: int | None) -> None:
        try:
            refusal, limit = await sync_to_async(body_gate.admission, thread_sensitive=False)(
                method, self._path, headers
            )
        except Exception:  # the ASGI gate, in front of Django, decides again after the body
            logger.exception("Could not decide on the body of %s %s", method, self._path)
            refusal, limit = None, settings.REQUEST_MAX_BODY_BYTES
        if self.channel is None or self._refused:  # the client went away meanwhile
            return
        self._admitting = False
        if refusal is None and max(length or 0, self._received) > limit:
            refusal = body_gate.too_large(limit)
        if refusal is not None:
            self._refuse(refusal)
            return
        self._limit = limit
        if self._held is not None:  # the whole body came with the headers
            super().requestReceived(*self._held)
            return
        if self._expects_continue:
            self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.channel.transport.resumeProducing()

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        limit = self._limit if self._limit is not None else settings.REQUEST_MAX_BODY_BYTES
        if self._received > limit:  # chunked: no length announced
            self._refuse(body_gate.too_large(limit))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self._refused:
            return
        if self._admitting:
            self._held = (command, path, version)
            return
        super().requestReceived(command, path, version)

    def _refuse(self, refusal: body_gate.Refusal) -> None:
        self._refused = True
        self.channel.transport.write(_http_response(self._path, refusal))
        self.channel.loseConnection()


class HeaderDeadlineChannel(HTTPChannel):
    """Twisted's HTTP channel with a deadline for each request's headers.

    Twisted only closes a connection that sends nothing for a while (60 s), so a client that
    sends a request's headers one byte every few seconds (slowloris) holds its connection, and
    a few thousand such clients hold every socket the server may open. Here the headers must be
    complete within REQUEST_HEADER_TIMEOUT_S of their first byte (nginx's client_header_timeout;
    Apache's mod_reqtimeout), or the client gets 408 and the connection is closed. A body's
    pace is left to the idle timeout: an upload over a slow link is legitimate."""

    _header_deadline = None

    def dataReceived(self, data):
        # Line mode: reading a request line and headers (Twisted reads bodies, and buffers what
        # comes while a request is handled, in raw mode), so this is a request's first byte.
        if self.line_mode and self._header_deadline is None:
            self._header_deadline = self.callLater(
                settings.REQUEST_HEADER_TIMEOUT_S, self._headers_too_slow
            )
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._cancel_header_deadline()
        super().allHeadersReceived()

    def connectionLost(self, reason):
        self._cancel_header_deadline()
        super().connectionLost(reason)

    def _cancel_header_deadline(self):
        if self._header_deadline is not None and self._header_deadline.active():
            self._header_deadline.cancel()
        self._header_deadline = None

    def _headers_too_slow(self):
        self._header_deadline = None
        logger.info("Closed %s: its request headers took over %s s", self.transport.getPeer(),
                    settings.REQUEST_HEADER_TIMEOUT_S)  # fmt: skip
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        self.transport.loseConnection()


def _channel_with_header_deadline(factory) -> _GenericHTTPChannelProtocol:
    """What twisted.web.http.HTTPFactory builds for each connection, with the channel above."""
    return _GenericHTTPChannelProtocol(HeaderDeadlineChannel())


@dataclass(frozen=True)
class _SpooledChunk:
    offset: int
    size: int


class _BodyOnDiskQueue(asyncio.Queue):
    """An application's input queue that holds request body chunks as places in a file."""

    def __init__(self, body_file):
        super().__init__()
        self._body_file = body_file
        self._queued = 0

    def put_nowait(self, message):
        if message.get("type") == "http.request" and message.get("body"):
            size = len(message["body"])
            message = {**message, "body": _SpooledChunk(self._queued, size)}
            self._queued += size
        super().put_nowait(message)

    async def get(self):
        message = await super().get()
        chunk = message.get("body")
        if isinstance(chunk, _SpooledChunk):
            if self._body_file.closed:  # the client went away: Twisted closed the spool file
                return {"type": "http.disconnect"}
            self._body_file.seek(chunk.offset)
            message = {**message, "body": self._body_file.read(chunk.size)}
        return message


class BoundedServer(Server):
    def __init__(self, *args, **kwargs):
        # Chunks handed to the application: 1 MiB instead of 8 KiB, so a 4 GB body is 4,000
        # queue entries rather than 500,000 (each chunk is read from disk only when asked for).
        kwargs.setdefault("request_buffer_size", 1024 * 1024)
        super().__init__(*args, **kwargs)

    def create_application(self, protocol, scope):
        """daphne's own, with a queue that leaves the request body in Twisted's spool file."""
        assert "application_instance" not in self.connections[protocol]
        body_file = getattr(protocol, "content", None)
        input_queue = asyncio.Queue() if body_file is None else _BodyOnDiskQueue(body_file)
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope, receive=input_queue.get, send=partial(self.handle_reply, protocol)
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(
            application_instance, loop=asyncio.get_event_loop()
        )
        return input_queue


def install() -> None:
    """Makes `daphne ilportal.asgi:application` (however started) use the classes above.

    daphne imports the application before it builds its server, and looks its request class up
    when a connection opens, so this runs in time from ilportal/asgi.py."""
    daphne.http_protocol.WebRequest = BoundedWebRequest
    daphne.http_protocol.HTTPFactory.protocol = _channel_with_header_deadline
    daphne.cli.CommandLineInterface.server_class = BoundedServer
