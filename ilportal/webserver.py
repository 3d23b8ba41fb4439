"""Daphne, told not to hold request bodies in memory (`install()` runs from ilportal/asgi.py).

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
known, or, for a chunked body, as soon as the count passes the limit; the connection is closed.
Who may send a large body to which view is decided before Django reads it, by
apps.accounts.body_gate.
"""

import asyncio
from dataclasses import dataclass
from functools import partial

import daphne.cli
import daphne.http_protocol
from daphne.http_protocol import WebRequest
from daphne.server import Server
from django.conf import settings

_TOO_LARGE = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


def _too_large_response() -> bytes:
    body = b'{"detail": "The request body is larger than %d bytes."}' % (
        settings.REQUEST_MAX_BODY_BYTES
    )
    return _TOO_LARGE % (len(body), body)


class BoundedWebRequest(WebRequest):
    _refused = False
    _received = 0

    def __init__(self, *args, **kwargs):
        # Twisted's in-memory parsing of form bodies into `args`, which daphne never reads.
        super().__init__(*args, **{**kwargs, "parsePOSTFormSubmission": False})

    def gotLength(self, length):
        super().gotLength(length)
        if length is not None and length > settings.REQUEST_MAX_BODY_BYTES:
            self._refuse()

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > settings.REQUEST_MAX_BODY_BYTES:  # chunked: no length announced
            self._refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self) -> None:
        self._refused = True
        self.channel.transport.write(_too_large_response())
        self.channel.loseConnection()


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
    daphne.cli.CommandLineInterface.server_class = BoundedServer
